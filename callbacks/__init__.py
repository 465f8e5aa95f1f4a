"""Lightning callbacks: evaluation, sample logging, preference sample collection."""
