from services.demo.run import main

main()
