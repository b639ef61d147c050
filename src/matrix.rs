//! Turning user input into a validated build matrix (implemented by the foundation issue).
