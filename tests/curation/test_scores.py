"""Frame and clip scorers: Farneback (the paper's method and the compensated variant) and RAFT motion, text area
(PP-OCR DB, Tesseract), classic aesthetics, and their rank correlations with the synthetic corpus' ground truth."""

import stat

import cv2
import numpy as np
import pytest
import torch
from curation_media import pan, textured
from omegaconf import OmegaConf
from PIL import Image, ImageDraw, ImageFont

from lightning_svd.config import load_config
from lightning_svd.curation.aesthetic import ClassicQuality
from lightning_svd.curation.motion import CompensatedFarneback, PaperFarneback, RaftFlow, build_flow
from lightning_svd.curation.ocr import (
    PpOcrDbDetector,
    TesseractDetector,
    TextAreaScorer,
    parse_tesseract_tsv,
    polygons_to_mask,
)
from lightning_svd.curation.quality import covering_scene, evaluate_against_truth
from lightning_svd.synthetic import load_truth

# CompensatedFarneback's scores of a 1.5 px/frame pan and a noisy still shot, measured before it got its name
PAN_SCORE_BEFORE, NOISY_SCORE_BEFORE = 3.3695472478866577, 0.057419970631599426
AT_24_FPS = np.arange(200) / 24.0  # frame times of a constant 24 fps video


def farneback_score(frames, flow: CompensatedFarneback | PaperFarneback | None = None):
    stack = np.stack(frames)
    return (flow or CompensatedFarneback()).score(stack, 0, len(stack), AT_24_FPS)


def paper_profile_flow():
    return build_flow(OmegaConf.to_container(load_config("curate", "paper", check_paths=False).curation.flow))


def test_the_paper_profile_scores_motion_with_the_papers_plain_farneback():
    """2-fps samples (every 12th frame at 24 fps), grey at 16 px on the short side, OpenCV Farneback between
    consecutive samples, mean magnitude: computed here by hand, equal to the paper method's score."""
    frames = pan(96, 160, 5, 48, 1.5)
    greys = [cv2.cvtColor(cv2.resize(frames[i], (26, 16), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
             for i in (0, 12, 24, 36)]
    pairs = [cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 7, 3, 5, 1.1, 0) for a, b in zip(greys, greys[1:])]
    by_hand = np.mean([float(np.linalg.norm(flow, axis=2).mean()) for flow in pairs])
    flow = paper_profile_flow()
    assert isinstance(flow, PaperFarneback) and flow.frames_needed(0, 48, AT_24_FPS) == [0, 12, 24, 36]
    assert farneback_score(frames, flow) == pytest.approx(by_hand, rel=1e-12)
    assert flow.score(np.stack(frames), 0, 12, AT_24_FPS) is None  # one 2-fps sample: no pair, no extrapolation
    assert "farneback paper" in flow.describe() and "16-px short side" in flow.describe()


def test_the_tiny_profile_keeps_the_compensated_variant_and_its_numbers():
    """The variant's scores as before it got its name (a 1.5 px/frame pan and a noisy still shot)."""
    flow = build_flow(OmegaConf.to_container(load_config("curate", "tiny").curation.flow))
    assert flow == CompensatedFarneback()
    rng = np.random.default_rng(0)
    base = textured(96, 160, 6)
    noisy = [np.clip(base + rng.normal(0, 35, base.shape), 0, 255).astype(np.uint8) for _ in range(48)]
    assert farneback_score(pan(96, 160, 5, 48, 1.5), flow) == pytest.approx(PAN_SCORE_BEFORE, rel=1e-6)
    assert farneback_score(noisy, flow) == pytest.approx(NOISY_SCORE_BEFORE, rel=1e-6)
    assert "farneback compensated" in flow.describe()
    with pytest.raises(ValueError, match="method must be paper or compensated, got 'lk'"):
        build_flow({"backend": "farneback", "farneback": {"method": "lk"}})


def test_farneback_is_zero_for_a_still_shot_and_grows_with_pan_speed():
    still = farneback_score([textured(96, 160, 5)] * 48)
    speeds = [0.5, 1.5, 3.0]
    scores = [farneback_score(pan(96, 160, 5, 48, s)) for s in speeds]
    assert still < 0.05
    assert scores[0] < scores[1] < scores[2]
    # a pan of s px/frame at 96 px is 12 s px per 0.5 s, i.e. 2 s px on the 16-px map (the pan is diagonal-ish)
    diagonal = np.hypot(1.0, 0.5)
    assert scores[1] == pytest.approx(2 * 1.5 * diagonal, rel=0.3)


def test_noise_compensation_keeps_a_noisy_still_shot_below_a_slow_pan():
    rng = np.random.default_rng(0)
    base = textured(96, 160, 6)
    noisy = [np.clip(base + rng.normal(0, 35, base.shape), 0, 255).astype(np.uint8) for _ in range(48)]
    slow = pan(96, 160, 6, 48, 0.4)
    assert farneback_score(noisy) < farneback_score(slow)
    plain = CompensatedFarneback(noise_compensated=False)
    assert farneback_score(noisy, plain) > 2 * farneback_score(noisy)


@pytest.mark.parametrize("method", [PaperFarneback, CompensatedFarneback])
def test_flow_is_per_second_of_video_at_a_variable_frame_rate(method):
    """One pan at a constant speed per second, filmed at 24 fps and by a camera alternating 1/24 and 3/24 s frame
    intervals: both score alike, and the variable-rate samples are the frames nearest each half second."""
    speed = 36.0  # px per second at 96 px
    steady_times = AT_24_FPS[:49]
    uneven_times = np.concatenate([[0.0], np.cumsum(np.tile([1, 3], 24) / 24.0)])[:49]
    scores = []
    for times in (steady_times, uneven_times):
        frames = [textured(96, 160, 5, (speed * t, 0.5 * speed * t)) for t in times[:48]]
        scores.append(method().score(np.stack(frames), 0, 48, times))
    assert scores[1] == pytest.approx(scores[0], rel=0.1)
    assert PaperFarneback().frames_needed(0, 48, uneven_times) == [0, 6, 12, 18, 24, 30, 36, 42]


def test_flow_samples_at_two_fps():
    assert PaperFarneback().frames_needed(0, 48, AT_24_FPS) == [0, 12, 24, 36]
    flow = CompensatedFarneback()
    assert flow.frames_needed(0, 48, AT_24_FPS) == [0, 1, 2, 12, 13, 14, 24, 25, 26, 36, 37, 38]
    assert flow.frames_needed(0, 2, AT_24_FPS) == [0, 1]


def test_raft_runs_on_random_weights_and_loads_a_local_state_dict(tmp_path):
    frames = {i: f for i, f in enumerate(pan(128, 128, 7, 13, 2.0))}
    config = {"backend": "raft", "fps": 2.0, "raft": {"model": "raft_small", "width": 128, "height": 128,
                                                      "num_flow_updates": 2}}
    torch.manual_seed(0)
    random_flow = build_flow(config)
    value = random_flow.score(frames, 0, 13, AT_24_FPS)
    assert np.isfinite(value) and value >= 0
    weights = tmp_path / "raft_small.pth"
    torch.save(random_flow.network().state_dict(), weights)
    loaded = RaftFlow(fps=2.0, weights=str(weights), width=128, height=128, num_flow_updates=2)
    assert loaded.score(frames, 0, 13, AT_24_FPS) == pytest.approx(value, rel=1e-5)
    with pytest.raises(ValueError, match="multiples of 8"):
        RaftFlow(width=800, height=450)


def with_text(frame: np.ndarray, text: str, size: int = 15) -> np.ndarray:
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size)
    for dx, dy in [(-1, 0), (1, 0), (0, -1), (0, 1)]:
        draw.text((20 + dx, 60 + dy), text, fill=(0, 0, 0), font=font)
    draw.text((20, 60), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


@pytest.fixture(scope="module")
def ppocr():
    return TextAreaScorer(PpOcrDbDetector(limit_side_len=160))


def test_ppocr_db_finds_overlay_text_and_nothing_on_texture(ppocr):
    plain = textured(96, 160, 11)
    assert ppocr.frame_area(plain) == 0.0
    small = ppocr.frame_area(with_text(plain, "SALE", 12))
    large = ppocr.frame_area(with_text(plain, "SALE 50% OFF", 15))
    assert 0.0 < small < large < 0.4
    assert ppocr.score([plain, with_text(plain, "SALE 50% OFF", 15), plain]) == large


def test_ppocr_db_detects_at_its_short_side_and_answers_at_the_frame_size():
    detector = PpOcrDbDetector(limit_side_len=416)
    frame = with_text(textured(720, 1280, 4), "SUBSCRIBE NOW", 24)
    mask = detector.text_mask(frame)
    assert mask.shape == (720, 1280)
    rows, cols = np.nonzero(mask)
    assert 50 < rows.mean() < 90 and 5 <= cols.min() < cols.max() < 400  # text drawn from (20, 60)
    with pytest.raises(ValueError, match="multiple of 32"):
        PpOcrDbDetector(limit_side_len=400)


def test_text_mask_counts_overlapping_boxes_once():
    boxes = [np.array([[0, 0], [9, 0], [9, 9], [0, 9]]), np.array([[5, 0], [14, 0], [14, 9], [5, 9]])]
    assert polygons_to_mask(boxes, 10, 20).sum() == 150


def test_tesseract_tsv_parsing_keeps_confident_words():
    tsv = ("level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
           "1\t1\t0\t0\t0\t0\t0\t0\t800\t480\t-1\t\n"
           "5\t1\t1\t1\t1\t1\t100\t200\t150\t50\t91.5\tSALE\n"
           "5\t1\t1\t1\t1\t2\t300\t200\t100\t50\t20.0\t~~\n")
    boxes = parse_tesseract_tsv(tsv, min_confidence=60, scale=5.0)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], [[20, 40], [49, 40], [49, 49], [20, 49]])


def test_tesseract_backend_runs_the_binary(tmp_path):
    fake = tmp_path / "tesseract"
    fake.write_text("#!/bin/sh\ncat > /dev/null\nprintf 'level\\tpage_num\\tblock_num\\tpar_num\\tline_num\\t"
                    "word_num\\tleft\\ttop\\twidth\\theight\\tconf\\ttext\\n"
                    "5\\t1\\t1\\t1\\t1\\t1\\t100\\t200\\t150\\t50\\t95\\tSALE\\n'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    scorer = TextAreaScorer(TesseractDetector(binary=str(fake)))
    assert scorer.frame_area(textured(96, 160, 2)) == pytest.approx(30 * 10 / (96 * 160))
    with pytest.raises(FileNotFoundError, match="tesseract-ocr"):
        TesseractDetector(binary=str(tmp_path / "missing"))


def test_classic_quality_ranks_each_degradation_below_the_clean_frame():
    clean = textured(96, 160, 3)
    cv2.circle(clean, (50, 40), 12, (230, 60, 40), -1)
    cv2.rectangle(clean, (100, 50), (125, 75), (40, 60, 220), -1)
    rng = np.random.default_rng(1)
    blurred = cv2.GaussianBlur(clean, (0, 0), 3.0)
    noisy = np.clip(clean + rng.normal(0, 30, clean.shape), 0, 255).astype(np.uint8)
    flat = (clean.mean(axis=(0, 1)) * 0.7 + clean * 0.3).astype(np.uint8)
    quality = ClassicQuality()
    score = quality.frame_score(clean)
    assert 0 < max(quality.frame_score(f) for f in (blurred, noisy, flat)) < score <= 10


def test_classic_quality_leaves_a_crisp_overlay_out_of_a_blurred_frame(ppocr):
    blurred = cv2.GaussianBlur(textured(96, 160, 3), (0, 0), 3.0)
    cv2.circle(blurred, (50, 40), 12, (230, 60, 40), -1)
    blurred = cv2.GaussianBlur(blurred, (0, 0), 2.5)
    overlaid = with_text(blurred, "SALE 50% OFF", 15)
    mask = ppocr.detector.text_mask(overlaid)
    quality = ClassicQuality()
    assert 0.02 < mask.mean() < 0.3
    # measured whole, the crisp letters pass the blurred shot as sharp; outside the text boxes it stays blurred
    assert quality.frame_score(overlaid) > 2 * quality.frame_score(blurred)
    assert quality.frame_score(overlaid, mask) == pytest.approx(quality.frame_score(blurred, mask), rel=0.1)
    assert quality.measurements(overlaid, mask)["blur"] > 1.5 * quality.measurements(overlaid)["blur"]
    everything = np.ones(mask.shape, dtype=bool)
    assert quality.frame_score(overlaid, everything) == quality.frame_score(overlaid)


@pytest.fixture(scope="module")
def corpus_quality(quality_results):
    rows = [row for result in quality_results for row in result.rows]
    cuts = {r.video_path: [c["frame"] for c in r.cuts] for r in quality_results}
    truths = {r.video_path: load_truth(r.video_path) for r in quality_results}
    return rows, evaluate_against_truth(rows, cuts, truths), truths


def test_flow_score_ranks_clips_by_true_speed(corpus_quality):
    rows, report, truths = corpus_quality
    assert report["flow_spearman"] >= 0.9, report
    scenes = [covering_scene(truths[r["video_path"]], r["start_frame"], r["end_frame"]) for r in rows]
    static = [r["flow_score"] for r, s in zip(rows, scenes) if s["speed"] == 0]
    moving = [r["flow_score"] for r, s in zip(rows, scenes) if s["speed"] > 0]
    assert static and max(static) < min(moving)


def test_ocr_area_ranks_clips_by_true_text_area(corpus_quality):
    """Issue target: Spearman >= 0.9 against the true text area, clips without text near 0."""
    rows, report, truths = corpus_quality
    scenes = [covering_scene(truths[r["video_path"]], r["start_frame"], r["end_frame"]) for r in rows]
    no_text = [r["ocr_area"] for r, s in zip(rows, scenes) if s["text_area"] == 0]
    with_text = [r["ocr_area"] for r, s in zip(rows, scenes) if s["text_area"] > 0]
    assert no_text and with_text and max(no_text) <= 0.01 < min(with_text)
    assert report["ocr_spearman"] >= 0.9, report


def test_classic_aesthetic_ranks_planted_degradations_below_clean_scenes(corpus_quality):
    rows, report, truths = corpus_quality
    assert report["aesthetic_spearman"] >= 0.8, report
    scenes = [covering_scene(truths[r["video_path"]], r["start_frame"], r["end_frame"]) for r in rows]
    overlaid = [r for r, s in zip(rows, scenes) if s["text_area"] > 0 and s["degradation"] is None]
    assert overlaid and all("outside ppocr_db text boxes" in r["aesthetic_score_model"] for r in rows)


def test_classic_quality_sees_noise_in_two_pixel_grains():
    """A 3x3 noise operator barely answers grain two pixels wide; measured on the 2x2 means too, it does."""
    clean = textured(96, 160, 3)
    rng = np.random.default_rng(2)
    cells = rng.normal(0, 30, (48, 80, 3))
    coarse = np.clip(clean + np.repeat(np.repeat(cells, 2, axis=0), 2, axis=1), 0, 255).astype(np.uint8)
    quality = ClassicQuality()
    assert quality.measurements(clean)["noise"] < 3 < 15 < quality.measurements(coarse)["noise"]
    assert quality.frame_score(coarse) < 0.5 * quality.frame_score(clean)
