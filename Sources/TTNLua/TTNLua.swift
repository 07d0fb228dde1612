// Placeholder: the Lua runtime is being written (issue 3).
