"""The embedding cache's append-only log: what the app appends per upload, a retrain sees and keeps."""

from __future__ import annotations

import torch

from trainer import EmbeddingCache


def test_appended_embeddings_are_seen_by_another_reader_and_kept_by_a_save(tmp_path) -> None:
    app = EmbeddingCache(tmp_path, "trunk-48-pad")
    first = torch.arange(8, dtype=torch.float32).view(2, 4)  # (2, C)
    app.append(["a" * 64, "b" * 64], first)
    retrain = EmbeddingCache(tmp_path, "trunk-48-pad")  # another process opening the cache
    assert len(retrain) == 2 and torch.equal(retrain.get(["b" * 64]), first[1:])
    app.append(["c" * 64, "a" * 64], torch.ones(2, 4))  # "a" is stored already: kept as it was
    retrain.add(["d" * 64], torch.zeros(1, 4))
    retrain.save()  # folds in "c", appended after it opened, and empties the log
    assert retrain.log_path.stat().st_size == 0
    again = EmbeddingCache(tmp_path, "trunk-48-pad")
    assert sorted(again.keys()) == ["a" * 64, "b" * 64, "c" * 64, "d" * 64]
    assert torch.equal(again.get(["a" * 64, "c" * 64]), torch.stack([first[0], torch.ones(4)]))
    # A record cut short (a writer killed mid-write) is not read; the whole ones are.
    app.append(["e" * 64], torch.full((1, 4), 2.0))  # into the log the save emptied
    assert "e" * 64 in app and "e" * 64 in EmbeddingCache(tmp_path, "trunk-48-pad")
    with open(app.log_path, "ab") as handle:
        handle.write(b"f" * 30)
    assert sorted(EmbeddingCache(tmp_path, "trunk-48-pad").keys())[-1] == "e" * 64
