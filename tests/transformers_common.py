"""transformers' own common test mixins, taken at test time from the sdist of the installed transformers.

The PyPI sdist ships `tests/test_modeling_common.py` (`ModelTesterMixin`), `tests/test_configuration_common.py`
(`ConfigTester`) and `tests/test_processing_common.py` (`ProcessorTesterMixin`), but not the modules they import
from the GitHub repository only. `transformers_tests()` downloads the sdist once (`pip download`, cached under the
repository's `.cache/`), extracts its `tests/` folder as the package `transformers_tests` and writes stand-ins for
the missing imports:

* `exporters.test_export.ExportTesterMixin`: no export tests (the exporter test-suite is not shipped); SALOVA's
  own torch.export/compile checks live in the slow tier.
* `generation.test_utils.GenerationTesterMixin`: no generation tests, unless `SALOVA_GENERATION_TEST_UTILS` names
  the `tests/generation/test_utils.py` of a transformers checkout, which is used instead (the repository's own
  generation checks are in `test_generation.py`).
* `utils.test_configuration_utils.config_common_kwargs`: non-default values of `PreTrainedConfig`'s common keys.
* `fetch_hub_objects_for_ci.url_to_local_path`: local fixtures instead of Hub downloads (the real clips for
  videos, a generated picture for images, a generated tone for audio).

Nothing of transformers' test code is stored in this repository.
"""

import functools
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave
from pathlib import Path

import numpy as np
import transformers

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "transformers-tests"
PACKAGE = "transformers_tests"

EXPORT_STAND_IN = '''"""Stand-in: the exporter test-suite is not in the sdist."""


class ExportTesterMixin:
    """No export tests; SALOVA checks torch.export in its own slow tier."""


class ExportGenerateTesterMixin(ExportTesterMixin):
    """Imported by recent `tests/generation/test_utils.py`; no export-generate tests here either."""
'''

GENERATION_STAND_IN = '''"""Stand-in: `GenerationTesterMixin` is only in transformers' GitHub repository."""


class GenerationTesterMixin:
    """No generation tests here; SALOVA's generation checks are in tests/test_generation.py."""
'''

CONFIGURATION_STAND_IN = '''"""Stand-in for `config_common_kwargs`: non-default common `PreTrainedConfig` values."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "tie_word_embeddings": False,
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
'''

FETCH_STAND_IN = '''"""Stand-in for transformers' `fetch_hub_objects_for_ci.py`: local fixtures, no Hub downloads."""

from pathlib import Path

FIXTURES = {fixtures!r}


def url_to_local_path(url, return_url_if_not_found=True):
    name = url.rsplit("/", 1)[-1]
    suffix = Path(name).suffix.lower()
    kind = "video" if suffix in {{".mp4", ".avi", ".mov", ".mkv", ".webm"}} else "audio" if suffix in {{
        ".mp3", ".wav", ".flac"}} else "image"
    return FIXTURES[name] if name in FIXTURES else FIXTURES[kind]
'''


@functools.cache
def transformers_tests() -> Path:
    """The installed transformers' sdist `tests/` folder with stand-ins, importable as `transformers_tests`.

    Its parent folder (and its `utils/` for `fetch_hub_objects_for_ci`) are put on `sys.path`.
    """
    version = transformers.__version__
    root = CACHE / version
    package = root / PACKAGE
    if not (package / "test_modeling_common.py").is_file():
        _extract(_download_sdist(version), root)
    _write_stand_ins(root)
    for folder in (root, root / "utils"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return package


def import_common(module: str):
    """`import_common("test_modeling_common")` -> transformers' module of that name from the sdist."""
    transformers_tests()
    return importlib.import_module(f"{PACKAGE}.{module}")


def _download_sdist(version: str) -> Path:
    archive = CACHE / f"transformers-{version}.tar.gz"
    if archive.is_file():
        return archive
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q"]
        command += [f"transformers=={version}", "-d", download]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        found = list(Path(download).glob("transformers-*.tar.gz"))
        if result.returncode != 0 or not found:
            raise RuntimeError(
                f"Could not download the sdist of transformers {version} (`{' '.join(command)}`): "
                f"{result.stderr.strip()[-500:]}. Put transformers-{version}.tar.gz in {CACHE} to run offline."
            )
        shutil.move(found[0], archive)
    return archive


def _extract(archive: Path, root: Path) -> None:
    """Extracts `transformers-<version>/tests/*` into `root/transformers_tests`, atomically."""
    staging = Path(tempfile.mkdtemp(dir=CACHE))
    with tarfile.open(archive) as sdist:
        prefix = f"{sdist.getnames()[0].split('/')[0]}/tests/"
        members = [m for m in sdist.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        for member in members:
            member.name = member.name[len(prefix) :]
        sdist.extractall(staging / PACKAGE, members=[m for m in members if m.name], filter="data")
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / PACKAGE, ignore_errors=True)
    (staging / PACKAGE).rename(root / PACKAGE)
    shutil.rmtree(staging)


def _write_stand_ins(root: Path) -> None:
    package = root / PACKAGE
    generation = os.environ.get("SALOVA_GENERATION_TEST_UTILS")
    files = {
        package / "__init__.py": "",
        package / "exporters" / "__init__.py": "",
        package / "exporters" / "test_export.py": EXPORT_STAND_IN,
        package / "generation" / "__init__.py": "",
        package / "generation" / "test_utils.py": Path(generation).read_text() if generation else GENERATION_STAND_IN,
        package / "utils" / "__init__.py": "",
        package / "utils" / "test_configuration_utils.py": CONFIGURATION_STAND_IN,
        root / "utils" / "fetch_hub_objects_for_ci.py": FETCH_STAND_IN.format(fixtures=_local_fixtures(root)),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


def _local_fixtures(root: Path) -> dict[str, str]:
    """Local files for the Hub URLs the common tests name: real clips, a picture and a tone written here."""
    from conftest import real_video
    from PIL import Image

    fixtures = root / "fixtures"
    fixtures.mkdir(parents=True, exist_ok=True)
    image = fixtures / "picture.png"
    if not image.is_file():
        y, x = np.mgrid[0:240, 0:320]
        pixels = np.stack([x * 255 // 320, y * 255 // 240, (x + y) * 255 // 560], axis=-1).astype(np.uint8)
        Image.fromarray(pixels).save(image)
    tone = fixtures / "tone.wav"
    if not tone.is_file():
        samples = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 16000).astype(np.int16)
        with wave.open(str(tone), "wb") as audio:
            audio.setnchannels(1)
            audio.setsampwidth(2)
            audio.setframerate(16000)
            audio.writeframes(samples.tobytes())
    return {
        "video": str(real_video("bigbuckbunny.mp4")),
        "big_buck_bunny_320x240_10s.mp4": str(real_video("bigbuckbunny.mp4")),
        "sample_demo_1_320x240.mp4": str(real_video("bikes.mp4")),
        "tiny_video_320x240.mp4": str(real_video("carphone_pristine.mp4")),
        "image": str(image),
        "audio": str(tone),
    }
