# Convenience targets; each is one command you can also run directly.
.PHONY: build test firmware lab lab-down

build:
	go build -o bin/ ./cmd/...

test:
	go test ./...

# Cross-builds mpsa-cpe for every CPE target with OpenWrt packages into dist/.
firmware:
	go run ./firmware/mkfirmware -out dist

lab: build
	sudo ./bin/mpsa-lab up

lab-down:
	sudo ./bin/mpsa-lab down
