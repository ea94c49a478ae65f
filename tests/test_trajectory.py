"""The trajectory record: validation, masked spans, JSONL round trip, verl-style collation."""

import pytest
import torch

from searche1.fileio import InputError
from searche1.rollout.trajectory import FinishReason, Trajectory, Turn, collate, load_trajectories, save_trajectories


def _traj(**kw):
    base = dict(group_id="nq/1", sample_index=0, prompt_ids=[5, 6, 7], response_ids=[10, 11, 12, 90, 91, 13, 14],
                response_mask=[1, 1, 1, 0, 0, 1, 1], logprobs=[-0.1, -0.2, -0.3, 0.0, 0.0, -0.4, -0.5],
                turns=[Turn(0, 3, "search", "q", ["d1", "d2"], (3, 5)), Turn(5, 7, "answer")],
                answer="Paris", reward=1.0, em=1.0, golden_answers=["Paris"], prompt_text="p", response_text="r é")
    base.update(kw)
    return Trajectory(**base)


def test_derived_fields_and_spans():
    t = _traj()
    assert t.n_searches == 1 and t.n_generated == 5
    assert t.masked_spans() == [(3, 5)]
    assert _traj(response_mask=[0, 1, 1, 0, 0, 1, 0]).masked_spans() == [(0, 1), (3, 5), (6, 7)]


@pytest.mark.parametrize("kw,message", [
    (dict(logprobs=[0.0]), "differ in length"),
    (dict(response_mask=[1, 1, 1, 2, 0, 1, 1]), "0/1 only"),
    (dict(turns=[Turn(0, 9, "answer")]), "outside the 7 response tokens"),
    (dict(finish_reason="exploded"), "not a valid FinishReason"),
])
def test_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        _traj(**kw)


def test_jsonl_roundtrip(tmp_path):
    trajs = [_traj(), _traj(sample_index=1, finish_reason=FinishReason.NO_ANSWER, answer=None, turns=[])]
    save_trajectories(tmp_path / "t.jsonl", trajs)
    back = load_trajectories(tmp_path / "t.jsonl")
    assert back == trajs
    assert '"n_searches": 1' in (tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines()[0]


def test_bad_trajectory_file_names_line(tmp_path):
    path = tmp_path / "t.jsonl"
    save_trajectories(path, [_traj()])
    path.write_text(path.read_text() + '{"group_id": "x"}\n')
    with pytest.raises(InputError, match=r"t.jsonl:2: not a trajectory"):
        load_trajectories(path)


def test_collate_pads_like_verl():
    a = _traj()
    b = _traj(prompt_ids=[1], response_ids=[2, 3], response_mask=[1, 0], logprobs=[-1.0, 0.0], turns=[],
              reward=0.0)
    batch = collate([a, b], pad_id=0)
    assert batch["prompt_ids"].tolist() == [[5, 6, 7], [0, 0, 1]]
    assert batch["prompt_attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["response_ids"].shape == (2, 7) and batch["response_ids"][1].tolist() == [2, 3, 0, 0, 0, 0, 0]
    assert batch["response_mask"][1].tolist() == [True, False, False, False, False, False, False]
    assert batch["response_mask"].dtype == torch.bool
    assert batch["logprobs"][0].tolist() == pytest.approx(a.logprobs)
    assert batch["rewards"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError):
        collate([], 0)
