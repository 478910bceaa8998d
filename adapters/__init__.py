"""Trainers (LoRA, LoHa, LoKr, native fine-tuning), installed as ``t2ibench.adapters``."""
