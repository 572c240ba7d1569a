"""The artery territory trainer: cached working-grid data, patches, a short run that overfits one phantom,
inference back on an oblique anisotropic input grid, and the evaluation numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fixed_networks import ThresholdNet
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate import dice
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import read_label_file, write_volume
from PELabelUpLib.io.image_files import read_image_file
from PELabelUpLib.models.artery import ArteryPreprocessing, artery_input, predict_artery_territory
from PELabelUpLib.models.folder import load_model, sha256_of
from PELabelUpLib.preprocessing import apply_window
from PELabelUpLib.synthetic.cohort import generate_cohort, plan_cohort
from PELabelUpLib.synthetic.grid import rotation
from PELabelUpLib.synthetic.phantom import generate_phantom
from PELabelUpLib.volume import CTVolume
from training.artery.augment import (
    NO_AUGMENTATION,
    Augmentation,
    augment_and_window,
    augment_image,
    brighten_neighbours,
    implant_defects,
    implant_occlusions,
    thin_branch_voxels,
)
from training.artery.data import (
    ArteryPatchDataset,
    WorkingCase,
    cache_key,
    crop_patch,
    list_cohort_cases,
    load_working_case,
)
from training.artery.evaluate import evaluate_cases, radius_bin_names, territory_scores
from training.artery.evaluate import main as evaluate_main
from training.artery.train import RUN_DEFINING, SETTINGS_ADDED, parse_args, train
from training.engine import DistContext, run_config, warn_changed_settings

SMALL_PHANTOM = {"size_xy": (48, 48), "n_slices": 32, "spacing_mm": (1.5, 1.5, 1.5)}


@pytest.fixture(scope="module")
def a_phantom_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small phantom (48 x 48 x 32 voxels at 1.5 mm: the pulmonary trunk and hila) written as a cohort."""
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, plan_cohort(1, seed=11, overrides=SMALL_PHANTOM), workers=1)
    return out


def test_cache_holds_what_artery_input_computes_and_is_rebuilt_when_the_source_changes(
        a_phantom_cohort: Path, tmp_path: Path) -> None:
    (case,) = list_cohort_cases(a_phantom_cohort)
    prep = ArteryPreprocessing(spacing_mm=(2.0, 2.0, 2.5))
    work = load_working_case(case, prep, tmp_path)
    image, grid = artery_input(read_image_file(case.ct_path), prep)
    assert work.geometry.same_grid(grid)
    np.testing.assert_array_equal(apply_window(work.hu, prep.window_hu), image)
    assert work.arteries.dtype == np.uint8 and set(np.unique(work.arteries)) == {0, 1}
    assert work.artery_voxels.size == int(work.arteries.sum())

    record = next(tmp_path.glob("*/*/case.json"))
    written = record.stat().st_mtime_ns
    again = load_working_case(case, prep, tmp_path)  # from the cache
    assert record.stat().st_mtime_ns == written
    np.testing.assert_array_equal(again.hu, work.hu)
    os.utime(case.ct_path, ns=(written + 10**9, written + 10**9))  # the source changed: rebuild
    load_working_case(case, prep, tmp_path)
    assert record.stat().st_mtime_ns != written
    load_working_case(case, ArteryPreprocessing(spacing_mm=(3.0, 3.0, 3.0)), tmp_path)
    assert len(list(tmp_path.iterdir())) == 2  # another working spacing, another cache folder


def test_a_lower_label_coverage_keeps_thin_branches_and_gets_its_own_cache(tmp_path: Path) -> None:
    """A tube 1.6 mm across, oblique to a 1.5 mm working grid: at coverage 0.5 it falls apart, at 0.25 it stays
    one piece, and the thick label contains the thin one."""
    spacing = 0.4
    z, y, x = np.mgrid[0:40, 0:60, 0:60].astype(np.float32) * spacing
    centre_y, centre_x = 12.0 + 0.35 * z, 12.0 + 0.2 * z  # a line drifting through the slices
    tube = ((y - centre_y) ** 2 + (x - centre_x) ** 2 <= 0.8 ** 2).astype(np.uint8)
    hu = np.where(tube > 0, 300, -850).astype(np.int16)
    geometry = Geometry(size=(60, 60, 40), spacing_mm=(spacing,) * 3, origin_mm=(0.0, 0.0, 0.0))
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    write_volume(CTVolume(hu, geometry), case_dir / "ct.nii.gz")
    write_volume(tube, case_dir / "arteries.nii.gz", geometry)
    case = list_cohort_cases(tmp_path)[0]
    prep = ArteryPreprocessing(spacing_mm=(1.5, 1.5, 1.5))
    cache = tmp_path / "cache"
    half = load_working_case(case, prep, cache)
    quarter = load_working_case(case, prep, cache, label_coverage=0.25)
    pieces = lambda mask: ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]  # noqa: E731
    assert pieces(quarter.arteries) == 1
    assert pieces(half.arteries) != 1
    assert np.all(quarter.arteries >= half.arteries)
    assert len(list(cache.iterdir())) == 2  # its own cache folder; the default's key is what it always was
    assert cache_key(prep) == cache_key(prep, 0.5) != cache_key(prep, 0.25)
    record = json.loads(next((cache / cache_key(prep, 0.25)).glob("*/case.json")).read_text())
    assert record["label_coverage"] == 0.25
    with pytest.raises(ValueError, match="label coverage"):
        load_working_case(case, prep, cache, label_coverage=0.0)


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 9)] * 3), start=st.tuples(*[st.integers(-12, 12)] * 3),
       size=st.tuples(*[st.integers(1, 8)] * 3))
def test_crop_patch_is_slicing_of_the_padded_array(shape: tuple[int, int, int], start: tuple[int, int, int],
                                                  size: tuple[int, int, int]) -> None:
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    pad = 20
    padded = np.pad(array, pad, constant_values=-1)
    expected = padded[tuple(slice(s + pad, s + pad + n) for s, n in zip(start, size, strict=True))]
    np.testing.assert_array_equal(crop_patch(array, start, size, -1), expected)


def a_tube_case() -> WorkingCase:
    """A working case whose image is a function of its label: a bright tube off-centre in x, in soft tissue."""
    arteries = np.zeros((24, 20, 30), dtype=np.uint8)
    arteries[:, 5:9, 3:8] = 1
    hu = np.where(arteries > 0, 400, 40).astype(np.int16)
    geometry = Geometry(size=(30, 20, 24), spacing_mm=(1.5, 1.5, 1.5), origin_mm=(0.0, 0.0, 0.0))
    return WorkingCase("tube", hu, arteries, geometry, np.flatnonzero(arteries))


def test_flipped_patches_keep_image_and_label_together() -> None:
    prep = ArteryPreprocessing()
    flip_always = Augmentation(flip_x_p=1.0, hu_scale=(1.0, 1.0), hu_shift=(0.0, 0.0), noise_hu=(0.0, 0.0))
    dataset = ArteryPatchDataset([a_tube_case()], prep, patches_per_epoch=12, patch_zyx=(16, 16, 16),
                                 artery_fraction=1.0, augmentation=flip_always)
    torch.manual_seed(0)
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["image"].shape == item["label"].shape == (1, 16, 16, 16)
        label = item["label"][0].numpy()
        assert label.sum() > 0  # centred on the tube
        inside_body = item["image"][0].numpy() > 0  # padding is air (0 after the window)
        expected = apply_window(np.where(label > 0, 400, 40), prep.window_hu)
        np.testing.assert_allclose(item["image"][0].numpy()[inside_body], expected[inside_body], atol=1e-6)


def test_augmentation_flips_only_x_and_changes_contrast() -> None:
    hu = np.random.default_rng(0).integers(-900, 600, size=(6, 7, 8)).astype(np.int16)
    label = (hu > 300).astype(np.uint8)
    image, flipped_label = augment_and_window(hu, label, (100.0, 700.0),
                                              Augmentation(flip_x_p=1.0, noise_hu=(0.0, 0.0)), np.random.default_rng(1))
    np.testing.assert_array_equal(flipped_label, label[:, :, ::-1])
    plain, same_label = augment_and_window(hu, label, (100.0, 700.0), NO_AUGMENTATION, np.random.default_rng(1))
    np.testing.assert_array_equal(plain, apply_window(hu, (100.0, 700.0)))
    np.testing.assert_array_equal(same_label, label)
    scaled_back = image[:, :, ::-1]
    assert not np.array_equal(scaled_back, plain)  # contrast was jittered
    assert np.corrcoef(scaled_back.ravel(), plain.ravel())[0, 1] > 0.99  # ... but the anatomy is where it was
    # the label-free variant (callers that flip several arrays) draws the same jitter and says it flipped
    same, flipped = augment_image(hu, (100.0, 700.0), Augmentation(flip_x_p=1.0, noise_hu=(0.0, 0.0)),
                                  np.random.default_rng(1))
    assert flipped
    np.testing.assert_array_equal(same, image)


def test_synthetic_defects_darken_the_lumen_only_and_other_vessels_get_brighter() -> None:
    case = a_tube_case()
    hu, label = case.hu.astype(np.float32), case.arteries
    wide = Augmentation(defects=(3, 3), defect_radius_vox=(3.0, 3.0), defect_hu=(40.0, 40.0), defect_rim_p=0.0)
    defects = implant_defects(hu, label, wide, np.random.default_rng(3))
    assert defects.any() and not (defects & (label == 0)).any()  # inside the lumen only
    assert np.all(hu[defects] < 400) and np.median(hu[defects]) < 150  # clot-dark, soft at the edges
    np.testing.assert_array_equal(hu[label == 0], case.hu[label == 0])  # nothing outside the lumen changed

    bright = np.where(label > 0, 400, np.where(np.arange(30) < 15, 200, 40)).astype(np.float32)
    before = bright.copy()
    brighten_neighbours(bright, label, 1.0, 120.0)
    np.testing.assert_array_equal(bright[label > 0], before[label > 0])
    outside_vessel = (label == 0) & (before == 200)
    np.testing.assert_array_equal(bright[outside_vessel], 280.0)
    np.testing.assert_array_equal(bright[(label == 0) & (before == 40)], 40.0)


def two_tubes_in_lung() -> tuple[np.ndarray, np.ndarray]:
    """A thin (radius 1.5 voxels) and a thick (radius 6) contrast tube along z in lung, blurred like a CT."""
    z, y, x = np.mgrid[0:24, 0:40, 0:40]
    thin = (y - 10) ** 2 + (x - 10) ** 2 <= 1.5**2
    thick = (y - 25) ** 2 + (x - 25) ** 2 <= 6**2
    label = (thin | thick).astype(np.uint8)
    hu = ndimage.gaussian_filter(np.where(label > 0, 350.0, -850.0), 0.8).astype(np.float32)
    return hu, label


def test_thin_branches_are_told_from_thick_ones() -> None:
    _, label = two_tubes_in_lung()
    thin = thin_branch_voxels(label, 2.5)
    _, ys, xs = np.nonzero(thin)
    assert thin.any() and np.all(np.hypot(ys - 10, xs - 10) < 3)  # the thin tube only ...
    assert thin[:, 10, 10].all()  # ... along its whole length (the patch border is not its wall)
    assert not thin_branch_voxels(np.zeros_like(label), 2.5).any()


def test_occlusions_darken_a_stretch_of_a_thin_branch_with_its_partial_volume_and_nothing_else() -> None:
    hu, label = two_tubes_in_lung()
    before = hu.copy()
    plan = Augmentation(occlusions=(1, 1), occlusion_radius_vox=(4.0, 4.0), defect_hu=(50.0, 50.0))
    occluded = implant_occlusions(hu, label, plan, np.random.default_rng(2))
    _, ys, xs = np.nonzero(occluded)
    assert occluded.any() and np.all(np.hypot(ys - 10, xs - 10) < 4)  # on the thin branch and its wall
    changed = hu != before
    assert changed.any() and not changed[:, 15:, 15:].any()  # the thick tube and the lung round it are as they were
    zs = np.unique(np.nonzero(occluded)[0])
    middle = int(np.median(zs))
    lumen = np.percentile(before[label > 0], 90)
    share = (before[middle, 10, 10] + 850.0) / (lumen + 850.0)  # the axis voxel's contrast share
    loss = before[middle, 10, 10] - hu[middle, 10, 10]
    assert 0.8 * share * (lumen - 50.0) < loss <= share * (lumen - 50.0) + 1e-3  # contrast becomes clot there
    wall = (label == 0) & occluded
    assert wall.any() and np.all(hu[wall] <= before[wall]) and np.all(hu[wall] >= -850.0 - 1e-3)
    far = np.setdiff1d(np.arange(24), np.arange(zs.min() - 3, zs.max() + 4))
    np.testing.assert_array_equal(hu[far], before[far])  # the branch is patent above and below the stretch
    flat = np.full((6, 8, 8), -850.0, dtype=np.float32)
    assert not implant_occlusions(flat, np.zeros((6, 8, 8), np.uint8), plan, np.random.default_rng(0)).any()


@pytest.mark.slow
def test_a_tiny_network_overfits_one_phantom_and_the_folder_loads(a_phantom_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "pelabelup-arteries"
    args = parse_args(["--cohort", str(a_phantom_cohort), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                       "--epochs", "6", "--patches-per-epoch", "48", "--batch-size", "1", "--patch", "32", "48", "48",
                       "--artery-fraction", "1", "--augmentation", "none", "--channels", "8", "16", "32",
                       "--res-units", "0", "--norm", "batch", "--lr", "1e-2", "--window", "100", "700",
                       "--val-cases", "0", "--threads", "1", "--progress", "off"])
    run = train(args, DistContext())
    assert run.fit.ended == "completed" and run.model_folder == out

    network, metadata = load_model(out)
    assert metadata["name"] == "pelabelup-arteries" and metadata["task"] == "artery"
    assert metadata["preprocessing"] == ArteryPreprocessing(window_hu=(100.0, 700.0)).as_metadata()
    assert metadata["training"]["epochs_done"] == 6 and metadata["training"]["samples_per_s"] > 0
    (case,) = list_cohort_cases(a_phantom_cohort)
    volume = read_image_file(case.ct_path)
    mask, prob = predict_artery_territory(volume, network, metadata)
    truth, _ = read_label_file(case.arteries_path)
    assert dice(mask, truth) > 0.8

    weights_hash = sha256_of(out / "model.pt")
    summary = evaluate_cases([case], network, metadata)
    assert summary["dice_mean"] == pytest.approx(dice(mask, truth))
    # the command line: every score to --json, the brief figures merged into the metadata with --write
    assert evaluate_main(["--model", str(out), "--cohort", str(a_phantom_cohort), "--json", str(tmp_path / "s.json"),
                          "--write", "--threads", "1"]) == 0
    saved = json.loads((out / "metadata.json").read_text())
    recorded = saved["metrics"][f"heldout:{a_phantom_cohort.name}"]
    assert recorded["dice_mean"] == pytest.approx(summary["dice_mean"], abs=1e-4)
    assert "per_case" not in recorded
    assert json.loads((tmp_path / "s.json").read_text())[a_phantom_cohort.name]["per_case"]
    assert "val_patch_dice" in saved["metrics"]  # merged, not replaced
    assert sha256_of(out / "model.pt") == weights_hash == saved["sha256"]
    load_model(out)  # still a valid model folder


def test_training_stops_resumes_and_refuses_to_overwrite(a_phantom_cohort: Path, tmp_path: Path) -> None:
    base = ["--cohort", str(a_phantom_cohort), "--out", str(tmp_path / "model"), "--cache-dir", str(tmp_path / "c"),
            "--epochs", "2", "--patches-per-epoch", "2", "--patch", "16", "16", "16", "--channels", "4", "8",
            "--val-cases", "0", "--threads", "1", "--progress", "off", "--spacing", "2", "2", "2.5",
            "--label-coverage", "0.3"]
    first = train(parse_args([*base, "--stop-after-epoch", "1"]), DistContext())
    assert first.fit.ended == "interrupted" and first.model_folder is None
    with pytest.raises(FileExistsError, match="--resume"):
        train(parse_args(base), DistContext())
    second = train(parse_args([*base, "--resume"]), DistContext())
    assert second.fit.ended == "completed" and second.fit.state.epoch == 2
    metadata = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert metadata["training"]["steps"] == 2
    # the working grid and the label coverage reach the cache and the metadata
    assert metadata["preprocessing"]["spacing_mm"] == [2.0, 2.0, 2.5]
    assert metadata["training"]["cohort"]["label_coverage"] == 0.3
    (record,) = (tmp_path / "c").glob("*/*/case.json")
    assert json.loads(record.read_text())["label_coverage"] == 0.3
    with pytest.raises(FileExistsError, match="model folder exists"):
        train(parse_args([*base, "--resume"]), DistContext())


def test_resuming_a_checkpoint_from_before_a_setting_existed_warns_only_of_real_changes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    args = parse_args(["--cohort", str(tmp_path), "--out", str(tmp_path / "m"), "--seed", "3"])
    current = run_config(args, DistContext())
    older = {k: v for k, v in current.items() if k not in SETTINGS_ADDED}  # written before --spacing existed
    with caplog.at_level("WARNING"):
        assert warn_changed_settings(older, current, RUN_DEFINING, added=SETTINGS_ADDED) == []
        assert warn_changed_settings(older, current, RUN_DEFINING) == sorted(SETTINGS_ADDED)  # without: false alarm
        changed = parse_args(["--cohort", str(tmp_path), "--out", str(tmp_path / "m"), "--seed", "4",
                              "--label-coverage", "0.3"])
        assert warn_changed_settings(older, run_config(changed, DistContext()), RUN_DEFINING,
                                     added=SETTINGS_ADDED) == ["label_coverage", "seed"]
    assert "resuming with changed settings ['label_coverage', 'seed']" in caplog.text


def test_territory_lands_on_the_exact_oblique_anisotropic_input_grid() -> None:
    direction = rotation(np.array([0.3, 1.0, 0.2]), 17.0)
    geometry = Geometry(size=(50, 36, 14), spacing_mm=(0.8, 1.1, 3.0), origin_mm=(-30.0, 12.0, 50.0),
                        direction=tuple(direction.ravel()))
    centre_world = geometry.index_to_world(np.array([[30.0, 12.0, 9.0]]))[0]  # off-centre: flips would show
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.size], indexing="ij"), axis=-1).reshape(-1, 3)
    distance = np.linalg.norm(geometry.index_to_world(ijk) - centre_world, axis=1).reshape(geometry.size)
    sphere = (distance <= 9.0).transpose(2, 1, 0)  # (x, y, z) -> (Z, Y, X)
    volume = CTVolume(np.where(sphere, 400, -800).astype(np.int16), geometry, source="oblique sphere")

    metadata = {"preprocessing": ArteryPreprocessing(roi_size=(16, 16, 16)).as_metadata()}
    mask, prob = predict_artery_territory(volume, ThresholdNet().eval(), metadata)
    assert mask.shape == prob.shape == volume.hu.shape == geometry.shape_zyx
    assert mask.dtype == np.uint8 and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    assert dice(mask, sphere) > 0.85  # the sphere comes back where it was, on the input's own voxels


def test_territory_scores_count_clot_inside_the_territory() -> None:
    truth = np.zeros((4, 10, 10), dtype=np.uint8)
    truth[:, 2:6, 2:6] = 1  # 64 voxels
    pred = truth.copy()
    pred[:, 2:6, 2:4] = 0  # half the lumen missed (32 voxels) ...
    pred[:, 8:10, 8:10] = 1  # ... and 16 voxels outside it
    emboli = np.zeros_like(truth)
    emboli[0, 2:6, 2:6] = 1  # clot 1: 16 voxels, half inside the prediction
    emboli[3, 4:6, 4:6] = 2  # clot 2: 4 voxels, all inside
    scores = territory_scores(pred, truth, emboli)
    assert scores["dice"] == pytest.approx(2 * 32 / (48 + 64))
    assert scores["precision"] == pytest.approx(32 / 48) and scores["recall"] == pytest.approx(0.5)
    assert scores["emboli_voxels"] == 20 and scores["emboli_voxels_inside"] == 12
    assert scores["emboli_inside_fraction"] == pytest.approx([0.5, 1.0])


def test_recall_by_radius_tells_thin_branches_from_thick_ones() -> None:
    """Two straight tubes along z on a 0.5 x 0.5 x 1 mm grid, 0.6 mm and 4 mm in radius; the prediction finds only
    the thick one. Its voxels land in the top bin, the thin one's in the bottom bin."""
    spacing = (0.5, 0.5, 1.0)
    y, x = np.mgrid[0:60, 0:80] * 0.5
    thin = (y - 10.0) ** 2 + (x - 8.0) ** 2 <= 0.6 ** 2
    thick = (y - 15.0) ** 2 + (x - 28.0) ** 2 <= 4.0 ** 2
    truth = np.repeat((thin | thick)[None], 12, axis=0).astype(np.uint8)
    pred = np.repeat(thick[None], 12, axis=0).astype(np.uint8)
    by_radius = territory_scores(pred, truth, spacing_mm=spacing)["by_radius"]
    names = radius_bin_names()
    assert names == ["<1", "1-1.5", "1.5-2", "2-3", ">=3"]
    assert by_radius["reference"][0] == 12 * int(thin.sum()) and by_radius["found"][0] == 0
    assert by_radius["reference"][-1] == by_radius["found"][-1] == 12 * int(thick.sum())
    assert sum(by_radius["reference"]) == int(truth.sum())
    assert "by_radius" not in territory_scores(pred, truth)  # needs the spacing


BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "pelabelup-arteries"


def test_the_bundled_model_segments_an_unseen_phantom_with_its_clots() -> None:
    if not (BUNDLED_MODEL / "metadata.json").is_file():
        pytest.skip("no bundled artery model in Resources/Models/pelabelup-arteries")
    assert (BUNDLED_MODEL / "model.pt").stat().st_size < 5 * 2**20
    network, metadata = load_model(BUNDLED_MODEL)  # checks the sha256 and rebuilds the network from the metadata
    assert metadata["name"] == "pelabelup-arteries" and metadata["task"] == "artery"
    dices, clot_inside, clot_voxels = [], 0, 0
    for seed in (4242, 4243, 4244):  # phantoms no training cohort holds (their seeds are 32-bit draws)
        case = generate_phantom(seed, size_xy=(96, 96), n_slices=64, spacing_mm=(1.5, 1.5, 1.5), n_emboli=3)
        mask, _ = predict_artery_territory(case.ct, network, metadata)
        dices.append(dice(mask, case.arteries))
        clot_inside += int(mask[case.emboli > 0].sum())
        clot_voxels += int((case.emboli > 0).sum())
    assert np.mean(dices) > 0.8
    assert clot_voxels > 0 and clot_inside / clot_voxels > 0.6  # clot-filled lumen stays artery territory


def test_the_trainer_writes_the_batch_norm_adaptation_into_the_metadata(a_phantom_cohort: Path,
                                                                        tmp_path: Path) -> None:
    common = ["--cohort", str(a_phantom_cohort), "--cache-dir", str(tmp_path / "cache"), "--epochs", "1",
              "--patches-per-epoch", "2", "--batch-size", "1", "--patch", "16", "16", "16", "--augmentation",
              "none", "--channels", "4", "8", "16", "--res-units", "0", "--val-cases", "0", "--threads", "1",
              "--progress", "off"]
    assert parse_args(common + ["--out", str(tmp_path / "a")]).adapt_norm_patches == 0
    out = tmp_path / "adapting"
    run = train(parse_args(common + ["--out", str(out), "--adapt-norm-patches", "4"]), DistContext())
    assert run.model_folder == out
    _, metadata = load_model(out)
    assert metadata["preprocessing"]["adapt_norm_patches"] == 4
    assert ArteryPreprocessing.from_metadata(metadata).adapt_norm_patches == 4


def test_trainers_read_cohort_csv_as_the_evaluation_does(tmp_path: Path) -> None:
    """A cohort.csv path leading outside the cohort is refused by the artery and classifier trainers' readers."""
    from training.classifier.cohort import read_training_studies

    (tmp_path / "cohort.csv").write_text("case_id,study_uid,path\nphantom-1,,../elsewhere/phantom-1\n")
    for read in (list_cohort_cases, read_training_studies):
        with pytest.raises(InputError, match=r"cohort.csv: line 2: path '../elsewhere/phantom-1' leads outside"):
            read(tmp_path)
