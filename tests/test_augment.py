"""The batched CIFAR10 augmentation of the deep task."""

from __future__ import annotations

import pytest
import torch

from pdrl.data.augment import CIFAR10_MEAN, CIFAR10_STD, PairAugmentation, grayscale, rotate_hue, translate

NO_COLOUR = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, jitter_prob=0.0, grayscale_prob=0.0)


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def unnormalise(views: torch.Tensor) -> torch.Tensor:
    return views * torch.tensor(CIFAR10_STD).view(1, 3, 1, 1) + torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)


def test_two_normalised_float_views_of_the_batch() -> None:
    torch.manual_seed(0)
    view1, view2 = PairAugmentation()(images())
    assert view1.shape == view2.shape == (16, 3, 32, 32)
    assert view1.dtype == torch.float32
    assert not torch.equal(view1, view2)
    assert unnormalise(view1).min() >= -1e-5 and unnormalise(view1).max() <= 1 + 1e-5


def test_uint8_and_unit_float_images_give_the_same_views() -> None:
    batch = images()
    torch.manual_seed(1)
    from_uint8 = PairAugmentation()(batch)
    torch.manual_seed(1)
    from_float = PairAugmentation()(batch.float() / 255)
    for a, b in zip(from_uint8, from_float, strict=True):
        torch.testing.assert_close(a, b)


def test_flip_is_shared_by_both_views() -> None:
    batch = images()
    torch.manual_seed(2)
    view1, view2 = PairAugmentation(translate=0, **NO_COLOUR)(batch)
    torch.testing.assert_close(view1, view2)
    plain = PairAugmentation().normalise(batch)
    flipped = (view1 == plain.flip(-1)).flatten(1).all(1)
    kept = (view1 == plain).flatten(1).all(1)
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_translation_shifts_each_view_within_the_padding() -> None:
    batch = images(8).float() / 255
    torch.manual_seed(3)
    view1, _ = PairAugmentation(translate=4, translate_prob=1.0, **NO_COLOUR)(batch)
    view1 = unnormalise(view1)
    for image, view in zip(batch, view1, strict=True):
        found = []
        for flipped in (image, image.flip(-1)):
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    # output pixel (r, c) is input pixel (r + dy, c + dx) away from the reflected border
                    inside = flipped[:, 4 + dy : 28 + dy, 4 + dx : 28 + dx]
                    found.append(torch.allclose(view[:, 4:28, 4:28], inside, atol=1e-5))
        assert any(found)


def test_translate_reflects_at_the_border() -> None:
    image = torch.arange(16.0).view(1, 1, 4, 4)
    shifted = translate(image, torch.tensor([1]), torch.tensor([0]), padding=1)
    torch.testing.assert_close(shifted[0, 0, :3], image[0, 0, 1:])
    torch.testing.assert_close(shifted[0, 0, 3], image[0, 0, 2])  # reflected row


def test_zero_strength_jitter_is_the_identity_and_grayscale_has_equal_channels() -> None:
    batch = images()
    identity = PairAugmentation(translate=0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, jitter_prob=1.0)
    torch.manual_seed(4)
    view1, _ = PairAugmentation(translate=0, **{**NO_COLOUR, "grayscale_prob": 1.0})(batch)
    gray = unnormalise(view1)
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.manual_seed(5)
    identity_view, _ = PairAugmentation(
        translate=0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, jitter_prob=1.0, grayscale_prob=0.0
    )(batch)
    plain = identity.normalise(batch)
    assert all(
        torch.allclose(v, p, atol=1e-4) or torch.allclose(v, p.flip(-1), atol=1e-4)
        for v, p in zip(identity_view, plain, strict=True)
    )


def test_hue_rotation_keeps_luma() -> None:
    colours = 0.25 + 0.5 * torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    rotated = rotate_hue(colours, torch.tensor([0.05, -0.05, 0.1, 0.0]))
    torch.testing.assert_close(grayscale(rotated), grayscale(colours), atol=2e-3, rtol=0)
    assert not torch.allclose(rotated[0], colours[0])
    torch.testing.assert_close(rotated[3], colours[3], atol=1e-5, rtol=0)


def test_bad_arguments_and_inputs_raise() -> None:
    with pytest.raises(ValueError, match="probability"):
        PairAugmentation(jitter_prob=1.5)
    with pytest.raises(ValueError, match="hue"):
        PairAugmentation(hue=0.7)
    with pytest.raises(ValueError, match="RGB"):
        PairAugmentation()(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        PairAugmentation()(torch.ones(2, 3, 32, 32, dtype=torch.int64))
