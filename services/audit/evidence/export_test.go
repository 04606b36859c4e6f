package evidence

// ParseRecordFast exposes the fast line parser to the fuzz test.
var ParseRecordFast = parseRecordFast
