"""Video scripts: sequences, novel views and the top-down transition."""
