"""QA examples: FlashRAG jsonl and Search-R1 parquet, read and written.

Every example gets a globally unique `group_id` = "{dataset}/{id}". Search-R1 grouped GRPO samples by
`extra_info.index`, which collides once several sources are merged; the dataset prefix keeps groups apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from searche1.fileio import InputError, atomic_write, read_jsonl, write_jsonl
from searche1.protocol import make_prompt_text

BENCHMARKS = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
PARQUET_COLUMNS = ("id", "question", "golden_answers", "data_source", "prompt", "ability", "reward_model", "extra_info")


@dataclass
class QAExample:
    id: str
    question: str
    golden_answers: list[str]
    dataset: str = ""  # the data_source; names a benchmark (nq, hotpotqa, ...) or a file stem
    split: str = ""
    metadata: dict[str, Any] | None = None
    index: int = 0  # position in its file (Search-R1's extra_info.index)
    group_id: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.group_id:
            self.group_id = f"{self.dataset}/{self.id}"

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "question": self.question, "golden_answers": list(self.golden_answers)}
        if self.metadata is not None:
            row["metadata"] = self.metadata
        return row


def dataset_name_from_path(path: str | os.PathLike) -> str:
    """`.../nq/test.jsonl` -> "nq"; `.../test/toy-nq.jsonl` -> "toy-nq"; otherwise the file stem."""
    p = Path(path)
    if p.parent.name in BENCHMARKS:
        return p.parent.name
    return p.stem


def split_name_from_path(path: str | os.PathLike) -> str:
    stem = Path(path).stem
    return stem if stem in ("train", "dev", "test", "validation") else ""


def _validate(path, lineno: int | str | None, obj: dict) -> tuple[str, str, list[str], Any]:
    for key in ("id", "question", "golden_answers"):
        if key not in obj:
            raise InputError(path, f"missing field {key!r}", lineno)
    qid, question, answers = obj["id"], obj["question"], obj["golden_answers"]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)):
        raise InputError(path, f"field 'id' must be a string, got {type(qid).__name__}", lineno)
    if not isinstance(question, str):
        raise InputError(path, f"field 'question' must be a string, got {type(question).__name__}", lineno)
    if not question.strip():
        raise InputError(path, "field 'question' is empty", lineno)
    if not isinstance(answers, list):
        raise InputError(path, f"field 'golden_answers' must be a list of strings, got {type(answers).__name__}",
                         lineno)
    if not answers:
        raise InputError(path, "field 'golden_answers' is an empty list", lineno)
    for a in answers:
        if not isinstance(a, str):
            raise InputError(path, f"field 'golden_answers' holds a {type(a).__name__}, expected strings", lineno)
        if not a.strip():  # EM would be decided by an answer the model never has to find
            raise InputError(path, f"field 'golden_answers' holds an empty answer {a!r}", lineno)
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InputError(path, f"field 'metadata' must be an object, got {type(metadata).__name__}", lineno)
    return str(qid), question, answers, metadata


def _check_unique(path, examples: list[QAExample], places: list[int | str]) -> None:
    """Ids are unique within a dataset: Search-R1's merged files repeat FlashRAG's `test_0`, ... once per source."""
    seen: dict[tuple[str, str], int | str] = {}
    for ex, place in zip(examples, places):
        key = (ex.dataset, ex.id)
        if key in seen:
            first = f"line {seen[key]}" if isinstance(seen[key], int) else seen[key]
            raise InputError(path, f"duplicate id {ex.id!r} in {ex.dataset!r} (first on {first})", place)
        seen[key] = place


def read_qa_jsonl(path: str | os.PathLike, dataset: str | None = None) -> list[QAExample]:
    """Read a FlashRAG jsonl file; any malformed line raises InputError naming file and line."""
    dataset = dataset or dataset_name_from_path(path)
    split = split_name_from_path(path)
    examples, linenos = [], []
    for lineno, obj in read_jsonl(path):
        qid, question, answers, metadata = _validate(path, lineno, obj)
        examples.append(QAExample(qid, question, answers, dataset, split, metadata, index=len(examples)))
        linenos.append(lineno)
    _check_unique(path, examples, linenos)
    return examples


def write_qa_jsonl(path: str | os.PathLike, examples: Iterable[QAExample]) -> int:
    return write_jsonl(path, (ex.to_json() for ex in examples))


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()),
        ("question", pa.string()),
        ("golden_answers", pa.list_(pa.string())),
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([
            ("style", pa.string()),
            ("ground_truth", pa.struct([("target", pa.list_(pa.string()))])),
        ])),
        # `metadata` (JSON text, null when absent) rides along inside extra_info so a round trip loses nothing;
        # Search-R1's loader passes extra_info through untouched.
        ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64()), ("metadata", pa.string())])),
    ])


def write_searchr1_parquet(path: str | os.PathLike, examples: Sequence[QAExample], split: str | None = None) -> int:
    """Write Search-R1's training/eval parquet (the `prompt` column holds the full protocol prompt)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i, ex in enumerate(examples):
        rows.append({
            "id": ex.id,
            "question": ex.question,
            "golden_answers": list(ex.golden_answers),
            "data_source": ex.dataset,
            "prompt": [{"role": "user", "content": make_prompt_text(ex.question)}],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": list(ex.golden_answers)}},
            "extra_info": {
                "split": split if split is not None else ex.split,
                "index": i,
                "metadata": None if ex.metadata is None else json.dumps(ex.metadata, ensure_ascii=False),
            },
        })
    table = pa.Table.from_pylist(rows, schema=_parquet_schema())
    with atomic_write(path, "wb") as f:
        pq.write_table(table, f)
    return len(rows)


def read_searchr1_parquet(path: str | os.PathLike) -> list[QAExample]:
    """Read a Search-R1 parquet (written by Search-R1's scripts or by searche1).

    Golden answers come from `golden_answers`, else from `reward_model.ground_truth.target`.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise InputError(path, f"not a readable parquet file ({e})") from None
    examples, places = [], []
    for i, row in enumerate(rows):
        where = f"row {i}"
        answers = row.get("golden_answers")
        if answers is None:
            target = ((row.get("reward_model") or {}).get("ground_truth") or {}).get("target")
            answers = list(target) if target is not None else None
        extra = row.get("extra_info") or {}
        obj = {k: v for k, v in (("id", row.get("id", str(extra.get("index", i)))), ("question", row.get("question")),
                                 ("golden_answers", answers)) if v is not None}
        qid, question, answers, _ = _validate(path, where, obj)
        metadata = extra.get("metadata")
        if metadata is not None:
            try:
                metadata = json.loads(metadata)
            except (TypeError, json.JSONDecodeError) as e:
                raise InputError(path, f"extra_info.metadata is not JSON text ({e})", where) from None
        examples.append(QAExample(qid, question, answers, row.get("data_source") or path.stem,
                                  extra.get("split") or "", metadata, index=i))
        places.append(where)
    _check_unique(path, examples, places)
    return examples


def load_qa(path: str | os.PathLike) -> list[QAExample]:
    """Read a QA file by extension: .jsonl (FlashRAG) or .parquet (Search-R1)."""
    suffix = Path(path).suffix
    if suffix == ".jsonl":
        examples = read_qa_jsonl(path)
    elif suffix == ".parquet":
        examples = read_searchr1_parquet(path)
    else:
        raise InputError(path, f"unknown QA file type {suffix!r} (expected .jsonl or .parquet)")
    if not examples:  # an evaluation over nothing would report an average EM of 0; a conversion, an empty file
        raise InputError(path, "holds no questions")
    return examples


def save_qa(path: str | os.PathLike, examples: Sequence[QAExample]) -> int:
    suffix = Path(path).suffix
    if suffix == ".jsonl":
        return write_qa_jsonl(path, examples)
    if suffix == ".parquet":
        return write_searchr1_parquet(path, examples)
    raise InputError(path, f"unknown QA file type {suffix!r} (expected .jsonl or .parquet)")
