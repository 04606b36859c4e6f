module github.com/bulwarkhq/bulwark/tools/bulwarkctl

go 1.26.8
