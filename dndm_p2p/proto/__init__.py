"""Generated demo message types (``demo.proto``) used by the examples."""
