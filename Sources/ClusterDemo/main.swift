print("cluster-demo")
