"""The Hugging Face Hub and Spaces: a run's upload folder, pushing it, ZeroGPU chunks."""
