"""What a run is asked to do: the suite file, validated and frozen, and the plan of its cells."""
