"""XOR decryption with a U-Net (Hauptmann & Adler, Table I)."""

from reconlab.studies.xor.study import STUDY

__all__ = ["STUDY"]
