"""The importance estimators: the interface every fitted model keeps (``base``), the reference's hashed
n-gram ratio (``ngram_ratio``), the classifier (``classifier``), and loading one by name (``registry``).

Kept empty of imports: a Python worker that unpickles a function of ``base`` imports only what it needs."""
