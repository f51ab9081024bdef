"""What lets several server processes and hosts share one database: state held in it rather than in memory
(held probes, searched faces, login failures), and how many server processes run."""
