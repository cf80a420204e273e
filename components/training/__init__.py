"""Training: LoRA fine-tuning of the router (classifier), the generator (RAG-style SFT) and the
answerability check."""
