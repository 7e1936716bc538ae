"""The OpenAI API surface: request and response models, parsing, validation, errors."""
