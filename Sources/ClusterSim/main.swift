print("cluster-sim")
