package identity

// KeyPattern exposes the key grammar to tests.
var KeyPattern = keyPattern
