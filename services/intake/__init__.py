"""intake: raw commune records in, validated canonical CloudEvents out, rejects to the dead-letter topic."""
