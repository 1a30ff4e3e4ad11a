"""The model: ModelConfig and the encoder (encoder), the position embeddings' registry
(positions), the losses (losses). Imports data, scenes and geometry, nothing above."""
