"""[matte] quality = "best": the extra model passes a still gets in file mode (vcam/matting/quality.py)."""
from __future__ import annotations

import cv2
import numpy as np

from vcam.commands.eval_stills import iou
from vcam.compositing.engine import Engine
from vcam.compositing.look import look_from_settings
from vcam.config import load_settings
from vcam.matting.quality import CROP_MAX_AREA, best_confidence, person_box
from vcam.matting.runtimes import open_segmenter


class CountingSegmenter:
    """A real segmenter that records the size of every picture it is given."""

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter
        self.sizes: list[tuple[int, int]] = []

    def segment(self, frame, *args):
        self.sizes.append(frame.shape[1::-1])
        return self.segmenter.segment(frame, *args)


def test_person_box_is_the_confident_pixels_grown_by_the_margin():
    conf = np.zeros((200, 300), np.uint8)
    conf[50:150, 100:140] = 200
    conf[60:70, 10:20] = 127  # under 50%: not a person
    x0, y0, x1, y1 = person_box(conf, margin=0.1)
    assert (x0, y0, x1, y1) == (100 - 6, 50 - 12, 140 + 6, 150 + 12)
    assert person_box(np.zeros((50, 50), np.uint8)) is None
    conf[:, :] = 255  # the whole picture: the box stays inside it
    assert person_box(conf) == (0, 0, 300, 200)


def test_small_people_get_a_second_look_and_a_portrait_does_not(portraits, people_varied):
    with open_segmenter("general", runtime="litert") as seg:
        counting = CountingSegmenter(seg)
        portrait = cv2.imread(str(portraits[0][0]))
        conf = best_confidence(counting, portrait)
        assert conf.shape == portrait.shape[:2] and conf.dtype == np.uint8
        assert len(counting.sizes) == 2  # the picture and its mirror image: the person fills it
        # the people_varied picture whose people fill the least of it
        smallest = min(people_varied, key=lambda p: np.count_nonzero(cv2.imread(str(p[1]), 0) > 127)
                       / cv2.imread(str(p[1]), 0).size)
        image = cv2.imread(str(smallest[0]))
        counting.sizes.clear()
        conf = best_confidence(counting, image)
        h, w = image.shape[:2]
        assert len(counting.sizes) == 4, counting.sizes  # twice the picture, twice the box around the people
        bw, bh = counting.sizes[2]
        assert bw * bh <= CROP_MAX_AREA * w * h
        truth = cv2.imread(str(smallest[1]), 0) > 127
        single = cv2.resize(seg.segment(image), (w, h)) >= 128
        assert iou(conf >= 128, truth) > iou(single, truth)  # the second look is what it is for


def test_engine_uses_best_quality_for_stills_only(portraits):
    settings = load_settings(use_user_config=False)
    assert settings.matte.quality == "best"
    image = cv2.imread(str(portraits[3][0]))
    h, w = image.shape[:2]
    with Engine(settings, video=False) as still, Engine(settings.replace("matte", quality="fast"),
                                                        video=False) as fast, \
            Engine(settings, video=True) as video:
        best = still.alpha(image).copy()
        quick = fast.alpha(image).copy()
        live = video.alpha(image, 0).copy()
    assert best.shape == quick.shape == live.shape == (h, w)
    assert not np.array_equal(best, quick)           # more passes, colour guide
    assert iou(best >= 128, quick >= 128) > 0.95     # ... on the same person
    assert np.array_equal(live >= 128, quick >= 128)  # video frames always take the live path


def test_best_path_feeds_the_blur_and_the_stage_times(portraits):
    """The file-mode path (BestStills) hands compositing what Matting.run does: the blur's small picture,
    the stage times, and a Matte the compositor blends like the live one."""
    settings = load_settings(use_user_config=False)
    fast = settings.replace("matte", quality="fast")
    image = cv2.imread(str(portraits[7][0]))
    look = look_from_settings(settings.replace("effect", name="blur", background=""))
    h, w = image.shape[:2]
    with Engine(settings, video=False) as best, Engine(fast, video=False) as live:
        small = best.matte(image, blur=look.blur).small
        assert small is not None and best.times.segment > 0 and best.times.matte > 0
        quarter = cv2.resize(image, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(int) - quarter.astype(int)).max() <= 1  # the frame's own small picture
        blurred = best.process(image, look).copy()
        reference = live.process(image, look.with_changes(matte=fast.matte)).copy()
    differs = np.abs(blurred.astype(int) - reference.astype(int)).max(axis=2) > 30
    assert 0 < differs.mean() < 0.02  # only along the edge, where the two mattes differ
