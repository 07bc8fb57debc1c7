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
    install_requires=[
        "torch>=2.4",
        "transformers>=5.23",
        "accelerate>=1.10",
        "datasets>=4.0",
        "pyarrow>=15.0",
        "huggingface_hub>=1.0",
        "safetensors>=0.5",
        "trl>=1.16",
        "av>=14.0",
        "scenedetect>=0.6.6",
        "numpy>=1.26",
        "pillow>=10.0",
        "tqdm>=4.66",
        "matplotlib>=3.8",
    ],
    extras_require={
        "train": ["deepspeed>=0.16"],
        "gpu": ["flash-attn>=2.6"],
        "app": ["gradio>=6.0"],
        "dev": ["pytest>=8.0", "parameterized>=0.9", "gradio>=6.0", "playwright>=1.40", "deepspeed>=0.16"],
    },
    entry_points={
        "console_scripts": ["salova=salova.cli:main", "salova-train=salova.training.cli:main"],
        "lmms_eval.models": ["salova=salova.evaluation.lmms_eval_manifest:MANIFEST"],
    },
)
