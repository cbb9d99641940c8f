package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	certPEM, err := os.ReadFile(os.Args[2])
	must(err)
	keyPEM, err := os.ReadFile(os.Args[3])
	must(err)
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	must(err)
	id, err := identity.NewX509Identity("ProviderMSP", cert)
	must(err)
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	must(err)
	sign, err := identity.NewPrivateKeySign(key)
	must(err)
	conn, err := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(err)
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn))
	must(err)
	defer gw.Close()
	network := gw.GetNetwork("billing")
	contract := network.GetContract("billing")
	_, err = contract.EvaluateTransaction("GetAsset", "{}")
	must(err)
	_, err = contract.Submit("RecordUsage", client.WithArguments("{}"),
		client.WithTransient(map[string][]byte{"k": []byte("v")}),
		client.WithEndorsingOrganizations("ProviderMSP"))
	must(err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	events, err := network.ChaincodeEvents(ctx, "billing", client.WithStartBlock(4))
	must(err)
	for range events {
	}
}
