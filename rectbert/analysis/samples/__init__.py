"""Joint samples: completions drawn from the model (sampler), scored against the scene's prior
(scores: samples.json) and drawn (figure: figures/samples.png)."""
