"""Image scripts: depth and bird's-eye profile pictures of single images."""
