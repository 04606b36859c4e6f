module github.com/bulwarkhq/bulwark/tools/provsim

go 1.26.8
