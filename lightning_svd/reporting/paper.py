"""The paper's numbers that our results are reported beside (Blattmann et al. 2023, arXiv 2311.15127).

Sources are in `reference/paper-notes.md` (sections 2.9, 7.5, 8.1) and `reference/evaluation-notes.md`
(section 0); the notes say where the printed values could not be read directly.
"""

TABLE1_COLUMNS = ("LVD", "LVD-F", "LVD-10M", "LVD-10M-F", "WebVid", "InternVid")
TABLE1 = {
    "#Clips": ("577M", "152M", "9.8M", "2.3M", "10.7M", "234M"),
    "Clip duration (s)": ("11.58", "10.53", "12.11", "10.99", "18.0", "11.7"),
    "Total duration (years)": ("212.09", "50.64", "3.76", "0.78", "5.94", "86.80"),
    "Mean #frames": ("325", "301", "335", "320", "–", "–"),
    "Mean clips/video": ("11.09", "4.76", "1.2", "1.1", "1.0", "32.96"),
    "Motion annotations?": ("yes", "yes", "yes", "yes", "no", "no"),
}

# UCF-101 zero-shot text-to-video FVD (lower is better), paper's Table 2.
TABLE2 = (
    ("CogVideo (ZH)", 751.34),
    ("CogVideo (EN)", 701.59),
    ("MagicVideo", 655.00),
    ("Video LDM", 550.61),
    ("Make-A-Video", 367.23),
    ("PYOCO", 355.20),
    ("SVD (ours in the paper)", 242.02),
)
TABLE2_NOTE = (
    "Baselines as the paper quotes them from the literature; their protocols differ (sample counts, prompts, "
    "frame rates), so only the SVD row follows the protocol measured here. MagicVideo is printed as 655.00 by "
    "Show-1 and 699.00 by Video LDM, LaVie and PixelDance; PYOCO's own summary gives 355.19."
)

# Multi-view generation on 50 GSO objects, 21-view orbits (paper's Table 3 / Fig. 10a).
TABLE3 = (
    ("SyncDreamer", 0.18, 15.29, 0.88),
    ("Zero123", 0.18, 14.87, 0.87),
    ("Zero123XL", 0.20, 14.51, 0.87),
    ("Scratch-MV", 0.22, 14.20, 0.76),
    ("SD2.1-MV", 0.18, 15.06, 0.83),
    ("SVD-MV", 0.14, 16.83, 0.89),
)
TABLE3_NOTE = "LPIPS lower is better; PSNR and CLIP-S (image-to-image CLIP similarity) higher is better."
