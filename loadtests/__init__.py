"""Load-test clients and tools that measure the chat API the way a shopper's client sees it."""
