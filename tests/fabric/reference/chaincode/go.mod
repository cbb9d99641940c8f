module example.com/refcc

go 1.22.0

require github.com/hyperledger/fabric-chaincode-go/v2 v2.3.0
