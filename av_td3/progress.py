"""The progress bar: one per phase (warm-up, then training, whose frames are many times slower), so the
ETA is the phase's; its postfix shows episodes and the latest evaluation's success and return."""

from __future__ import annotations

from tqdm import tqdm


class Progress:
    def __init__(self, enabled: bool, learning_starts: int, total_steps: int):
        self.enabled, self.learning_starts, self.total_steps = enabled, learning_starts, total_steps
        self.bar: tqdm | None = None

    def start(self, step: int, postfix: str) -> None:
        warmup = step < self.learning_starts
        self.bar = tqdm(total=self.learning_starts if warmup else self.total_steps, initial=step,
                        desc="warm-up" if warmup else "train", disable=not self.enabled, unit="frame",
                        dynamic_ncols=True, mininterval=1.0, postfix=postfix)

    def advance(self, previous: int, step: int, postfix: str) -> None:
        self.bar.update(step - previous)
        if previous < self.learning_starts <= step:  # warm-up over: a bar whose ETA is training's
            self.bar.close()
            self.start(step, postfix)

    def show(self, postfix: str) -> None:
        self.bar.set_postfix_str(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def postfix(episodes: int, evals: list[dict]) -> str:
    text = f"ep={episodes}"
    if evals:
        last = evals[-1]
        if "success_rate" in last:
            text += f" eval_success={last['success_rate']:.0%}"
        text += f" eval_return={last['mean_reward']:.0f}"
    return text
