"""Eval videos: trainer.eval_video=true writes one GIF per evaluation phase (the policy's view beside
the embedded simulator's RGB render) that decodes with one frame per agent step, and a TensorBoard video."""

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

from av_td3 import video
from av_td3.config import validate
from av_td3.trainer import Trainer


def test_eval_video_is_written_per_phase_and_decodes(compose, tmp_path):
    raw = compose(["+experiment=smoke", "trainer.total_steps=120", "trainer.learning_starts=60",
                   "trainer.eval_every=60", "trainer.eval_episodes=1", "env.max_episode_steps=25",
                   "trainer.eval_video=true", "trainer.progress_bar=false", "torch_threads=1"])
    cfg = validate(raw)
    trainer = Trainer(raw, cfg, tmp_path)
    trainer.run()
    gifs = sorted((tmp_path / video.VIDEOS).glob("eval_*.gif"))
    assert [g.name for g in gifs] == ["eval_000000060.gif", "eval_000000120.gif"]  # phases at 60, 120 (final)
    episode_steps = [e["avg_episode_length"] for e in trainer.evals]
    for gif, steps in zip(gifs, episode_steps):
        with Image.open(gif) as im:
            assert im.size[1] == video.HEIGHT and im.size[0] >= 2 * video.HEIGHT  # policy view + RGB render
            # The reset frame, then one per agent step, each 1/20 s; Pillow merges identical consecutive
            # frames (the ego at rest) into one of the summed duration, so the total is what is exact.
            total = 0
            for i in range(im.n_frames):
                im.seek(i)
                total += im.info["duration"]
            assert total == (int(steps) // cfg.trainer.action_repeat + 1) * 50
    summaries = [v for path in tmp_path.glob("events.out.tfevents.*")
                 for e in LegacyEventFileLoader(str(path)).Load() for v in e.summary.value if v.tag == video.TAG]
    assert len(summaries) == 2 and summaries[0].image.encoded_image_string[:6] == b"GIF89a"
    # The report embeds each group's final-evaluation video (its first finished run's last GIF).
    from av_td3.analysis.compare import RunRow
    from av_td3.analysis.report import final_videos
    from av_td3.analysis.runs import load_run

    (caption, copy), = final_videos([RunRow(load_run(tmp_path), "clip_arm=none", 0, "finished")], tmp_path / "rep")
    assert copy == tmp_path / "rep" / video.VIDEOS / "clip_arm=none.gif"
    assert copy.read_bytes() == gifs[-1].read_bytes() and "seed 0, 120 frames" in caption


def test_long_episodes_are_subsampled_to_real_time():
    import numpy as np

    frames = [np.full((video.HEIGHT, 10, 3), i % 255, np.uint8) for i in range(1000)]
    gif = video.to_gif(frames, fps=20)
    import io

    with Image.open(io.BytesIO(gif)) as im:  # every frame differs from the one before: none merged
        assert im.n_frames == video.MAX_FRAMES and im.info["duration"] == 250  # every 5th frame, 4 per s
    with pytest.raises(ValueError, match="no frames"):
        video.to_gif([], fps=20)
