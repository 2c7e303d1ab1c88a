"""The curriculum syllabus (BMVC 2023 Sec. 4.3, Eq. 11-13) as an ordering of the epoch, checked
against a slow per-window reference and scikit-image's entropy."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage.measure import shannon_entropy
from skimage.metrics import mean_squared_error

from patchbench.data import TensorImages
from patchbench.errors import PatchbenchError
from patchbench.training.syllabus import epoch_syllabus, image_scores, syllabus_permutation


def slow_syllabus(perm: list[int], score: dict[int, float], window: int, descending: bool) -> list[int]:
    """Eq. 11-13 per window, written out: cut, sort each window (Python's sort is stable), concatenate."""
    out = []
    for start in range(0, len(perm), window):
        out += sorted(perm[start:start + window], key=lambda i: -score[i] if descending else score[i])
    return out


@pytest.mark.parametrize("n,window", [(48, 8), (50, 8), (20, 1), (20, 64), (30, 7)])
@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_permutation_sorts_each_window_and_keeps_membership(n, window, order):
    gen = torch.Generator().manual_seed(n + window)
    dataset_scores = torch.randint(0, 5, (100,), generator=gen).double()  # many ties
    perm = torch.randperm(100, generator=gen)[:n]
    out = syllabus_permutation(perm, dataset_scores, window, order)
    assert out.dtype == perm.dtype and sorted(out.tolist()) == sorted(perm.tolist())
    assert out.tolist() == slow_syllabus(perm.tolist(), dict(enumerate(dataset_scores.tolist())), window, order == "descending")
    for start in range(0, n, window):
        w_in, w_out = perm[start:start + window], out[start:start + window]
        assert set(w_in.tolist()) == set(w_out.tolist())
        s = dataset_scores[w_out]
        assert torch.all(s[1:] >= s[:-1]) if order == "ascending" else torch.all(s[1:] <= s[:-1])


def test_syllabus_changes_the_order_in_which_samples_are_seen():
    gen = torch.Generator().manual_seed(0)
    dataset_scores = torch.rand(256, generator=gen)
    perm = torch.randperm(256, generator=gen)
    batch, window = 8, 4 * 8
    out = syllabus_permutation(perm, dataset_scores, window)
    assert not torch.equal(out, perm)
    position_in = torch.empty(256, dtype=torch.long)
    position_in[perm] = torch.arange(256)
    position_out = torch.empty(256, dtype=torch.long)
    position_out[out] = torch.arange(256)
    assert (position_in != position_out).float().mean() > 0.9  # almost every sample moves
    assert torch.equal(position_in // window, position_out // window)  # ... but stays in its window
    batch_means = dataset_scores[out].reshape(-1, window // batch, batch).mean(-1)  # (windows, batches per window)
    assert torch.all(batch_means[:, 1:] >= batch_means[:, :-1])  # simpler batches first within each window
    raw_means = dataset_scores[perm].reshape(-1, window // batch, batch).mean(-1)
    assert not torch.all(raw_means[:, 1:] >= raw_means[:, :-1])  # the random order alone does not do that


def test_window_of_one_is_the_identity():
    perm = torch.randperm(17, generator=torch.Generator().manual_seed(1))
    assert torch.equal(syllabus_permutation(perm, torch.rand(17), 1), perm)


def u8_images(n, gen, size=8):
    """uint8 images with 2..17 gray levels (distinct entropies are likely)."""
    levels = torch.randint(2, 18, (n,), generator=gen)
    imgs = torch.stack([(torch.randint(0, int(k), (3, size, size), generator=gen) * (255 // (int(k) - 1))) for k in levels])
    return imgs.to(torch.uint8)


def test_image_scores_entropy_matches_skimage():
    gen = torch.Generator().manual_seed(2)
    u8 = u8_images(6, gen)
    got = image_scores(u8.float() / 255, "entropy")
    assert got.shape == (6,)
    for img, h in zip(u8.numpy(), got.tolist()):
        assert h == pytest.approx(shannon_entropy(img, base=2), abs=1e-9)
    with pytest.raises(PatchbenchError, match="expects images"):
        image_scores(torch.rand(2, 3, 4, 4, 4), "entropy")


def test_callable_scores_distance_metric_against_each_windows_lowest_entropy_image():
    gen = torch.Generator().manual_seed(3)
    u8 = u8_images(40, gen)
    images = u8.float() / 255
    perm = torch.randperm(40, generator=gen)[:30]
    seen = []

    def window_scores(idx):
        seen.append(idx.clone())
        return image_scores(images[idx], "mse")

    out = syllabus_permutation(perm, window_scores, 8, "ascending")
    assert [s.tolist() for s in seen] == [perm[i:i + 8].tolist() for i in range(0, 30, 8)]  # once per window, in epoch order
    expected = []  # slow reference: per window, skimage entropies pick the reference, skimage MSE ranks
    for start in range(0, 30, 8):
        w = perm[start:start + 8].tolist()
        h = [shannon_entropy(u8[i].numpy(), base=2) for i in w]
        ref = w[int(np.argmin(h))]  # first minimum
        d = {i: mean_squared_error(images[ref].double().numpy(), images[i].double().numpy()) for i in w}
        expected += sorted(w, key=lambda i: d[i])
    assert out.tolist() == expected
    assert out[0].item() == perm[int(np.argmin([shannon_entropy(u8[i].numpy(), base=2) for i in perm[:8].tolist()]))].item()


def test_epoch_syllabus_hook_for_the_training_loop():
    gen = torch.Generator().manual_seed(4)
    u8 = u8_images(24, gen)
    source = TensorImages(u8, torch.zeros(24, dtype=torch.long))
    order = torch.randperm(24, generator=gen)
    cfg = SimpleNamespace(syllabus="entropy", syllabus_order="descending", syllabus_window=2, syllabus_bins=256, batch_size=4)
    out = epoch_syllabus(order, source, 8, cfg, torch.device("cpu"))
    h = {i: shannon_entropy(u8[i].numpy(), base=2) for i in range(24)}
    assert out.tolist() == slow_syllabus(order.tolist(), h, 8, descending=True)


def test_bad_arguments():
    perm = torch.randperm(10)
    with pytest.raises(PatchbenchError, match="window"):
        syllabus_permutation(perm, torch.rand(10), 0)
    with pytest.raises(PatchbenchError, match="known: ascending, descending"):
        syllabus_permutation(perm, torch.rand(10), 4, "random")
    with pytest.raises(PatchbenchError, match="beyond"):
        syllabus_permutation(perm, torch.rand(5), 4)
    with pytest.raises(PatchbenchError, match="returned 1 scores"):
        syllabus_permutation(perm, lambda idx: torch.zeros(1), 4)
    with pytest.raises(PatchbenchError, match="1-D integer"):
        syllabus_permutation(perm.float(), torch.rand(10), 4)
