"""soar: self-improving evolutionary program synthesis for ARC-AGI."""
