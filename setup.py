from pathlib import Path

from setuptools import setup

# The repository keeps one folder per concern; installed, they all live under the `salova` namespace so that
# generic folder names (`processing`, `training`) never collide in site-packages.
PACKAGE_DIRS = {
    "salova": "salova",
    "salova.modeling": "modeling_salova",
    "salova.processing": "processing",
    "salova.training": "training",
    "salova.hub_configs": "hub_configs",
    "salova.evaluation": "evaluation",
    "salova.assistant": "assistant",
}

TRAIN = ["deepspeed>=0.16"]
APP = ["gradio>=6.0"]
SERVE = ["fastapi>=0.115", "uvicorn>=0.30", "python-multipart>=0.0.18"]

setup(
    name="salova",
    version="0.1.0",
    description="SALOVA (CVPR 2025) long-video assistant as a Hub-native transformers package",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=list(PACKAGE_DIRS),
    package_dir=PACKAGE_DIRS,
    package_data={
        "salova.hub_configs": ["*.json", "chat_templates/*.jinja"],
        "salova.training": ["stages/*.json", "accelerate/*.yaml", "accelerate/*.json"],
    },
    # Lower bounds only; scripts/test.sh proves them by running the fast tier with each one pinned to its bound.
    install_requires=[
        "torch>=2.13",
        "transformers>=5.25",
        "accelerate>=1.10.1",
        "datasets>=5.2",
        "pyarrow>=24.0",
        "huggingface_hub>=2.4",
        "safetensors>=0.8",
        "trl>=1.16",
        "av>=17.1",
        "scenedetect>=0.7.2",
        "opencv-python>=5.0.0.93",
        "numpy>=2.0",
        "pillow>=10.1",
        "tqdm>=4.66.3",
        "matplotlib>=3.8.4",
    ],
    extras_require={
        "train": TRAIN,
        "gpu": ["flash-attn>=2.6"],
        "app": APP,
        "serve": SERVE,
        # The tests exercise every extra but the GPU one.
        "dev": ["pytest>=8.0", "parameterized>=0.9", "playwright>=1.40", "openai>=1.50", "httpx>=0.27"]
        + TRAIN
        + APP
        + SERVE,
    },
    entry_points={
        "console_scripts": ["salova=salova.cli:main", "salova-train=salova.training.cli:main"],
        "lmms_eval.models": ["salova=salova.evaluation.lmms_eval_manifest:MANIFEST"],
    },
)
