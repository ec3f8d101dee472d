"""What the mock upstream (tests/mock-upstream) answers, whatever the model."""

# Every completion: five words, one token each.
TEXT = "one two three four five"
COMPLETION_TOKENS = 5

# When the request offers tools: one call of the first tool with these arguments.
TOOL_ARGUMENTS = {"arg": "value"}

# Embeddings: 8 dimensions; input i gets i + (j + 1) / 8, exact in f32.
EMBEDDING_DIMS = 8


def embedding_vector(index):
    return [index + (j + 1) / 8 for j in range(EMBEDDING_DIMS)]
