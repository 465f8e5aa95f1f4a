"""Lightning DataModules: curated clips, subsets and threshold arms, images, UCF-101, multi-view."""
