"""Ray Serve front end: an engine deployment and an OpenAI-compatible ingress over it."""
