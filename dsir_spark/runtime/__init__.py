"""The Spark runtime: the session a job gets (local, cluster or Spark Connect), its logging, the archive
of compiled classes shipped to the JVM, and the Python worker daemon."""
