"""The names of the columns dsir-spark reads and writes, in one place for every layer."""

# Every dataset as read: an id per document and its text (renamed from the configured columns).
ID = "id"
TEXT = "text"
GENERATED_ID = "dsir_id"  # raw's id column when the data has none: a stable hash of the row

# The scores: a document's (or chunk's) wordpunct token count and its log importance weight.
NUM_TOKENS = "num_tokens"
LOG_WEIGHT = "log_weight"

# Scores of chunks (chunking.tokens > 0): ``id`` is "<doc id>/<chunk>", with the document's id, the chunk's
# index and its characters [start, end) in the document's text.
DOC_ID, CHUNK, CHAR_START, CHAR_END = "dsir_doc_id", "dsir_chunk", "dsir_char_start", "dsir_char_end"
