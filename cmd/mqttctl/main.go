// Command mqttctl manages MqttCluster objects through the operator's API,
// with kubectl's habits: apply -f, get -o, describe, delete, validate.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
