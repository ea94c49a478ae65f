"""One metrics writer per run: JSONL records `{"step", "time", "<prefix>/<name>": value, ...}`.

Built once by the command and passed down; every phase logs through it with its prefix (world/, retrieval/,
rollout/, grpo/, ofsd/, eval/). The JSONL file is the record; TensorBoard and Weights & Biases, when asked for
(`report_to`) and installed, get a copy of each numeric value.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path


def mean(values) -> float:
    """The mean of `values` (any iterable), 0.0 when there are none: the one average every report uses."""
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _mirrors(report_to, run_dir: Path, config: dict | None, append: bool, first_step: int) -> list:
    """(name, log(record, step), close()) for each requested mirror; a clear error when its package is missing."""
    out = []
    if "tensorboard" in report_to:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("report_to: tensorboard needs the tensorboard package: pip install tensorboard") from None
        # a resumed run logs its re-run steps again: drop what the killed run wrote from first_step on
        tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=first_step if append else None)

        def tb_log(values: dict, step: int):
            for name, value in values.items():
                tb.add_scalar(name, value, step)
            tb.flush()
        out.append(("tensorboard", tb_log, tb.close))
    if "wandb" in report_to:
        try:
            import wandb
        except ImportError:
            raise ImportError("report_to: wandb needs the wandb package: pip install wandb (and `wandb login`, or "
                              "WANDB_MODE=offline)") from None
        # The W&B run id lives in the run directory: a resumed run continues its W&B run, a new run gets a new
        # one. The step is logged as a metric (not W&B's own step, which only grows), so re-run steps appear.
        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if append and id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id + "\n")
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "searche1"), name=run_dir.name, id=run_id,
                         resume="allow", dir=str(run_dir), config=config)
        run.define_metric("*", step_metric="step")
        out.append(("wandb", lambda values, step: run.log({**values, "step": step}), run.finish))
    return out


class MetricsWriter:
    def __init__(self, path: str | os.PathLike, append: bool = False, report_to: tuple[str, ...] | list[str] = (),
                 config: dict | None = None, first_step: int = 1):
        """append=False starts the file afresh (a new run); True continues it (a resumed run). The file is a log:
        written line by line and flushed, not atomically, so a crash keeps every completed record.
        report_to: also send numeric values to "tensorboard" (next to the file, tensorboard/) and/or "wandb";
        first_step: the first step this writer will log (a resumed run's mirrors drop what came after it)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._mirrors = _mirrors(report_to, self.path.parent, config, append, first_step)
        self._f = open(self.path, "a" if append else "w", encoding="utf-8")
        self._t0 = time.time()

    def log(self, metrics: dict, step: int, prefix: str) -> dict:
        """Append one record; non-finite floats become null (JSON has no NaN)."""
        record = {"step": step, "time": round(time.time() - self._t0, 3)}
        for name, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            record[f"{prefix}/{name}"] = value
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        numeric = {k: v for k, v in record.items() if k not in ("step", "time") and isinstance(v, (int, float))
                   and not isinstance(v, bool)}
        for _, mirror_log, _ in self._mirrors:
            mirror_log(numeric, step)
        return record

    def close(self):
        self._f.close()
        for _, _, mirror_close in self._mirrors:
            mirror_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
