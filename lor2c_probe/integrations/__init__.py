"""Thin layers over ``lor2c_probe.Recorder`` for training frameworks: Hugging Face ``Trainer`` (``hf``), PyTorch
Lightning (``lightning``). A user's own ``accelerate`` loop needs none: ``Recorder(..., accelerator=accelerator)``.
Each imports its framework only when used."""
