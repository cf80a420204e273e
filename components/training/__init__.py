"""Training: LoRA fine-tuning of the router (classifier) and the generator (RAG-style SFT)."""
