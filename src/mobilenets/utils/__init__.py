"""Small helpers shared by every concern: JSON dataclasses, lazy exports, safe TensorFlow
imports, and context managers that put process-wide state back."""
