"""rao_jax: Recursive Agent Optimization in JAX."""
import setuptools

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.12",
    "sentencepiece>=0.2",
    "tokenizers>=0.21",
    "tensorflow-datasets>=4.9.9",
    "array_record>=0.7",
    "ml_collections>=1.0",
    "absl-py>=2.1",
    "numpy>=2.0",
    "safetensors>=0.5",
    "tqdm>=4.66",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",      # scripts/plot_figures.py
    "bm25s>=0.2.14",        # the chained-research suite's search_web
]

TEST_REQUIRES = [
    "pytest>=8",
    "pytest-xdist>=3.5",    # `pytest -n 2`: the README's test command runs the suite on two worker processes
    "hypothesis>=6.100",
    # Reference implementation for the parity tests only (CPU build).
    "torch==2.13.0",
    "transformers>=4.53",
]

setuptools.setup(
    name="rao_jax",
    version="0.1.0",
    description="Recursive Agent Optimization: RL for recursive LLM agents in JAX",
    packages=setuptools.find_packages(include=["rao_jax", "rao_jax.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": TEST_REQUIRES,
        # scripts/compile_tpu.py: compile for a TPU topology on any host (no TPU needed). jax's own "tpu"
        # extra brings the libtpu built for the installed jaxlib (libtpu 0.0.42.* for jax 0.10.2).
        "tpu-aot": ["jax[tpu]>=0.10"],
    },
)
