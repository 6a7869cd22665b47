"""study.dataset: the seeded training pipeline, its augmentations and the test-time views."""
import numpy as np

from study.dataset import make_dataset


def test_dataset_preprocesses_and_augments_in_graph():
    x = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8, dtype=np.uint8)
    plain = next(iter(make_dataset(x, y, 8)))
    assert plain[0].dtype.name == "float32" and np.allclose(plain[0].numpy(), x / 255.0)
    assert plain[1].numpy().tolist() == list(range(8))
    a1 = next(iter(make_dataset(x, y, 8, augment="rotate_flip", seed=3)))[0].numpy()
    assert a1.shape == (8, 32, 32, 3) and not np.allclose(a1, x / 255.0)
    assert 0.0 <= a1.min() and a1.max() <= 1.0


def _shift_and_flip(image, out, pad):
    """(dy, dx, flipped) such that out's centre is image shifted by (dy, dx), mirrored if flipped; or None."""
    c = slice(pad, 32 - pad)
    for flipped in (False, True):
        src = image[:, ::-1] if flipped else image
        for dy in range(-pad, pad + 1):
            for dx in range(-pad, pad + 1):
                if np.array_equal(out[c, c], src[pad + dy:32 - pad + dy, pad + dx:32 - pad + dx]):
                    return dy, dx, flipped
    return None


def test_crop_flip_shifts_each_image_by_at_most_4_pixels_and_mirrors_some():
    x = np.random.default_rng(0).integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    y = np.zeros(64, dtype=np.uint8)
    out = next(iter(make_dataset(x, y, 64, augment="crop_flip", seed=5)))[0].numpy()
    assert out.shape == (64, 32, 32, 3) and out.dtype == np.float32
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-3)  # pixels copied, not interpolated
    pixels = np.round(out * 255).astype(np.uint8)
    moves = [_shift_and_flip(x[i], pixels[i], 4) for i in range(64)]
    assert None not in moves                                   # every image: a whole-pixel shift <= 4, maybe mirrored
    assert len({(dy, dx) for dy, dx, _ in moves}) > 10        # per image, not one offset per batch
    assert 10 < sum(f for *_, f in moves) < 54                 # about half mirrored
    again = next(iter(make_dataset(x, y, 64, augment="crop_flip", seed=5)))[0].numpy()
    other = next(iter(make_dataset(x, y, 64, augment="crop_flip", seed=6)))[0].numpy()
    assert np.array_equal(out, again) and not np.array_equal(out, other)  # seeded


def _flipped_per_image(x, batches):
    """{image index: mirrored?} of crop_flip batches whose labels are the image indices."""
    seen = {}
    for images, labels in batches:
        pixels = np.round(images.numpy() * 255).astype(np.uint8)
        for out, i in zip(pixels, labels.numpy()):
            seen[int(i)] = _shift_and_flip(x[i], out, 4)[2]
    return seen


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40, dtype=np.uint8)
    ds = make_dataset(x, y, 16, shuffle=True, augment="crop_flip", seed=4, epochs=3, alternating_flip=True)
    batches = list(ds)
    per_epoch = [_flipped_per_image(x, batches[e * 3:(e + 1) * 3]) for e in range(3)]
    assert 10 < sum(per_epoch[0].values()) < 30                                   # a random half first
    assert all(per_epoch[1][i] != per_epoch[0][i] == per_epoch[2][i] for i in range(40))
    random = [_flipped_per_image(x, list(make_dataset(x, y, 16, shuffle=True, augment="crop_flip", seed=4,
                                                      epochs=3))[e * 3:(e + 1) * 3]) for e in range(3)]
    assert any(random[1][i] == random[0][i] for i in range(40))               # control: at random, not always
    # off (the default): the same batches as before the option existed (no flip mask given)
    plain = make_dataset(x, y, 16, shuffle=True, augment="crop_flip", seed=4, epochs=3)
    order = np.random.default_rng([4, 0]).permutation(40)[:16]
    import tensorflow as tf
    from study.dataset import augment_batch
    want = augment_batch(tf.constant(x[order] / np.float32(255)), "crop_flip", tf.constant([4, 0], tf.int64))
    assert np.array_equal(next(iter(plain))[0].numpy(), want.numpy())
    # a resumed run (start_epoch 1) sees the same flips in its epochs as the whole run
    resumed = list(make_dataset(x, y, 16, shuffle=True, augment="crop_flip", seed=4, epochs=3, start_epoch=1,
                                alternating_flip=True))
    assert all(np.array_equal(a[0].numpy(), b[0].numpy()) for a, b in zip(resumed, batches[3:]))


def test_flip_shift_tta_averages_six_views():
    from study.dataset import tta_views
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    views = tta_views(images, "flip_shift")
    mirror = images[:, :, ::-1]
    assert len(views) == 6 and np.array_equal(views[1], mirror)
    assert np.array_equal(views[2][:, 1:, 1:], images[:, :-1, :-1])     # one pixel down-right of the image...
    assert np.array_equal(views[3][:, :-1, :-1], images[:, 1:, 1:])     # ...and up-left
    assert np.array_equal(views[5][:, :-1, :-1], mirror[:, 1:, 1:])
    assert [len(tta_views(images, t)) for t in ("none", "flip")] == [1, 2]
