"""Everything that knows peft's names: targets, QPA-LoRA, counts, export, the fused head loss."""
