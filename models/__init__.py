"""The generator: architecture, self-supervised training data, training recipe (workstation side;
needs the export extra for torch)."""
