"""Generation with a base model or an exported adapter."""
